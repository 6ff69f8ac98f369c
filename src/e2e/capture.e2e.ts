import { randomBytes } from 'node:crypto';
import { createServer, get as httpGet } from 'node:http';
import test from 'ava';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { ProxyAgent, request } from 'undici';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startRole, startServer } from '../testing/helpers/cli.js';
import { announcedPeer } from '../testing/helpers/give-client.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { captureLoopback } from '../testing/helpers/tcpdump.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// What a censor on the path between get and give sees: tcpdump (Debian's) captures every packet on
// the give peer's port while a page with a marker string is fetched through get with each protocol
// (CONNECT, plain HTTP forward, SOCKS5). None of the ticket, `CONNECT`, `Proxy-Authorization`, the
// destination or the marker may appear in it; in a capture of the destination's own (plain) port,
// as a control, the marker does.

test('nothing readable on the wire between get and give: no ticket, no CONNECT, no destination, no page', async (t) => {
  await requireTool('tcpdump');
  const dir = await tempDir('lantern-capture-');
  t.teardown(() => dir.remove());
  const marker = `lantern-marker-${randomBytes(8).toString('hex')}`;
  const site = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${marker} at ${req.url}`);
  });
  const sitePort = (await listen(site, '127.0.0.1', 0)).port;
  t.teardown(() => site.close());
  const server = await startServer(`${dir.path}/data`, ['--rate-login-address', '1000/100']);
  t.teardown(() => server.stop());
  const giver = await addAgent(server, dir.path, 'giver');
  const user = await addAgent(server, dir.path, 'user');
  t.is((await runCli(['contacts', 'add', giver.userId, '--home', user.home])).code, 0);
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', giver.home, '--allow-private-destinations', '--advertise-to', user.userId], 'advertised');
  t.teardown(() => give.stop('SIGKILL'));
  const get = await startRole(['get', '--listen', '127.0.0.1:0', '--home', user.home]);
  t.teardown(() => get.stop('SIGKILL'));
  for (let i = 0; i < 100 && !get.events.some((e) => e['event'] === 'message' && e['adStatus'] === 'accepted'); i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, 300));
  const peer = announcedPeer(give);
  // The ticket get will present (tickets for one peer and user are alike but for the expiry).
  const ticket = (JSON.parse((await runCli(['ticket', '--home', user.home, '--peer', peer.fingerprint, '--json'])).stdout) as { ticket: string }).ticket;

  const onPath = await captureLoopback(`${dir.path}/give.pcap`, `tcp port ${peer.port}`);
  const control = await captureLoopback(`${dir.path}/site.pcap`, `tcp port ${sitePort}`);
  const page = `http://127.0.0.1:${sitePort}`;
  const bodies: string[] = [];
  for (const proxyTunnel of [true, false]) {
    const res = await request(`${page}/${proxyTunnel ? 'connect' : 'forward'}`, { dispatcher: new ProxyAgent({ uri: get.url, proxyTunnel }) });
    bodies.push(await res.body.text());
  }
  bodies.push(
    await new Promise<string>((resolve, reject) => {
      httpGet(`${page}/socks5`, { agent: new SocksProxyAgent(`socks5://${new URL(get.url).host}`) }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    }),
  );
  t.deepEqual(bodies, ['connect', 'forward', 'socks5'].map((p) => `${marker} at /${p}`), 'every protocol fetched the page');
  const wire = await onPath.stop();
  const plain = await control.stop();
  t.true(wire.length > 2000, `the capture holds the traffic (${wire.length} bytes)`);
  t.true(plain.includes(marker), "the control capture (the site's plain port) shows the marker, so a search would find it");
  const body = ticket.split('.')[0]!;
  for (const [what, needle] of [
    ['the ticket', ticket],
    ['the ticket claims', body.slice(0, 40)],
    ['the ticket in Basic form', Buffer.from(`ticket:${ticket}`).toString('base64').slice(0, 40)],
    ['CONNECT', 'CONNECT'],
    ['Proxy-Authorization', 'Proxy-Authorization'],
    ['proxy-authorization', 'proxy-authorization'],
    ['the destination', `127.0.0.1:${sitePort}`],
    ['the page', marker],
    ['the path', '/forward'],
  ] as const) {
    t.false(wire.includes(needle), `${what} is not on the wire`);
  }
});
