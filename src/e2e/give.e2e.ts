import { createHash, randomBytes } from 'node:crypto';
import { createServer, get as httpGet } from 'node:http';
import test from 'ava';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { ProxyAgent, request } from 'undici';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, sharedServer, startRole } from '../testing/helpers/cli.js';
import { announcedPeer, getViaForwardTls, getViaH2, getViaSocksTls, httpsProxy } from '../testing/helpers/give-client.js';
import { PeerIdentity } from '../crypto/peer-identity.js';

// The give role as a whole binary: tickets from the server, the proxy on port 0, registration.

const ctx = sharedServer(test, ['--rate-login-address', '1000/100', '--peer-ttl', '60s']);
const FILE = randomBytes(1024 * 1024);
const FILE_SHA = createHash('sha256').update(FILE).digest('hex');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function origin(t: { teardown(fn: () => void): void }): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': FILE.length });
    res.end(FILE);
  });
  const a = await listen(server, '127.0.0.1', 0);
  t.teardown(() => server.close());
  return `http://127.0.0.1:${a.port}/file`;
}

test('a give peer registers, serves ticket holders over TLS (HTTP/2 CONNECT, HTTP/1.1 CONNECT and forward, SOCKS5), and unregisters on SIGTERM', async (t) => {
  const target = await origin(t);
  const giver = await addAgent(ctx.server, ctx.dir, 'giver');
  const getter = await addAgent(ctx.server, ctx.dir, 'getter');
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', giver.home, '--allow-private-destinations', '--public-addr', 'proxy.example:443'], 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  const registered = give.events.find((e) => e['event'] === 'registered')!;
  const port = Number(new URL(give.url).port);
  t.regex(give.url, /^https:/, 'TLS by default');
  const peer = announcedPeer(give);
  t.like(registered, { host: '127.0.0.1', port, state: 'candidate', publicAddrHint: 'proxy.example:443', identityKey: peer.identityKey });

  t.is((await runCli(['ticket', '--home', getter.home])).code, 2, 'a proxy ticket names its peer');
  const ticketRun = await runCli(['ticket', '--home', getter.home, '--peer', peer.fingerprint, '--json']);
  t.is(ticketRun.code, 0, ticketRun.stderr);
  const { ticket } = JSON.parse(ticketRun.stdout) as { ticket: string };
  t.is(sha(await getViaH2(peer, ticket, target)), FILE_SHA, 'HTTP/2 CONNECT, as get uses it');
  const viaConnect = await request(target, { dispatcher: httpsProxy(give, ticket) });
  t.is(sha(Buffer.from(await viaConnect.body.arrayBuffer())), FILE_SHA, 'HTTP/1.1 CONNECT over TLS (curl --proxy https://)');
  t.is(sha((await getViaForwardTls(give, ticket, target)).body), FILE_SHA, 'HTTP forward over TLS');
  t.is(sha(await getViaSocksTls(peer, ticket, target)), FILE_SHA, 'SOCKS5 inside TLS');
  const noTicket = await request(target, { dispatcher: new ProxyAgent({ uri: give.url, proxyTls: { rejectUnauthorized: false } }) }).catch((e: Error) => e);
  t.true(noTicket instanceof Error || noTicket.statusCode === 400, 'no ticket, no proxy (nginx refuses CONNECT)');
  // A ticket for another give peer opens nothing here.
  const other = JSON.parse((await runCli(['ticket', '--home', getter.home, '--peer', 'AAAAAAAAAAAAAAAAAAAAAA', '--json'])).stdout) as { ticket: string };
  await t.throwsAsync(getViaH2(peer, other.ticket, target), { code: 'LA_ERR_DESTINATION_UNREACHABLE' } as never);
  // Someone else's key at this address: the pinned TLS refuses it.
  await t.throwsAsync(getViaH2({ ...peer, identityKey: new PeerIdentity().publicKey }, ticket, target), { code: 'LA_ERR_PEER_IDENTITY_MISMATCH' } as never);

  // The home is not locked while give runs: other commands work on it.
  const who = await runCli(['whoami', '--home', giver.home, '--json']);
  t.is(who.code, 0, who.stderr);
  t.is((await runCli(['inbox', '--home', giver.home])).code, 0);
  const api = await giver.api();
  t.teardown(() => api.close());
  t.is((await api.peerSelf()).peerId, String(registered['peerId']));

  // status answers "is my proxy reachable and used?" from the running instance.
  const status = JSON.parse((await runCli(['status', '--home', giver.home, '--json'])).stdout) as Record<string, unknown>;
  t.like(status, { role: 'give', url: give.url, paused: false, registration: { host: '127.0.0.1', port, state: 'candidate' } });
  t.is(typeof status['activeTunnels'], 'number');
  t.true((status['tunnelsServed'] as number) >= 3);
  t.true((status['bytesRelayed'] as number) >= 3 * FILE.length);
  // Paused without a restart: out of the registry, and ticket holders get the decoy too.
  t.is((await runCli(['give', '--pause', '--home', giver.home])).code, 0);
  await t.throwsAsync(api.peerSelf(), { code: 'LA_ERR_PEER_NOT_REGISTERED' } as never);
  t.is((await getViaForwardTls(give, ticket, target)).status, 404, 'paused: nginx answers');
  t.like(JSON.parse((await runCli(['status', '--home', giver.home, '--json'])).stdout), { paused: true, registration: null });
  t.is((await runCli(['give', '--resume', '--home', giver.home])).code, 0);
  t.is((await api.peerSelf()).port, port, 'registered again');
  const resumed = await request(target, { dispatcher: httpsProxy(give, ticket) });
  t.is(sha(Buffer.from(await resumed.body.arrayBuffer())), FILE_SHA);

  t.is(await give.stop('SIGTERM'), 0);
  t.like(give.events.at(-1), { event: 'stopped' });
  await t.throwsAsync(api.peerSelf(), { code: 'LA_ERR_PEER_NOT_REGISTERED' } as never);
});

test('status and pause without a running give peer say so', async (t) => {
  const idle = await addAgent(ctx.server, ctx.dir, 'idle');
  t.like(JSON.parse((await runCli(['status', '--home', idle.home, '--json'])).stdout), { running: false });
  const pause = await runCli(['give', '--pause', '--home', idle.home]);
  t.is(pause.code, 2);
  t.regex(pause.stderr, /no give peer runs/);
});

test('give without a login says so', async (t) => {
  const r = await runCli(['give', '--listen', '127.0.0.1:0', '--home', `${ctx.dir}/nobody`]);
  t.is(r.code, 4);
  t.regex(r.stderr, /LA_ERR_NOT_LOGGED_IN/);
});

test('availability ads reach contacts who were offline; strangers are ignored; expired ads are dropped', async (t) => {
  const owner = await addAgent(ctx.server, ctx.dir, 'owner');
  const friend = await addAgent(ctx.server, ctx.dir, 'friend');
  const late = await addAgent(ctx.server, ctx.dir, 'late');
  const stranger = await addAgent(ctx.server, ctx.dir, 'stranger');
  for (const a of [friend, late]) t.is((await runCli(['contacts', 'add', owner.userId, '--home', a.home, '--name', 'owner'])).code, 0);
  // Nobody is polling: the ads wait on the server, end-to-end encrypted. (12 s ads: long enough for
  // a loaded machine to read them before they expire; the test then waits for the expiry.)
  const give = await startRole(
    ['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations', '--advertise-to', friend.userId, late.userId, stranger.userId, '--ad-lifetime', '12s'],
    'advertised',
  );
  t.teardown(() => give.stop('SIGKILL'));
  const port = Number(new URL(give.url).port);
  t.like(give.events.find((e) => e['event'] === 'advertised'), { sentTo: [friend.userId, late.userId, stranger.userId], failed: [] });
  const adLine = async (home: string) => JSON.parse((await runCli(['inbox', '--home', home, '--json'])).stdout.trim()) as Record<string, unknown>;
  t.like(await adLine(friend.home), { adStatus: 'accepted', ad: { host: '127.0.0.1', port, protocols: ['connect', 'http', 'socks5'] } });
  const kept = JSON.parse((await runCli(['ads', '--home', friend.home, '--json'])).stdout) as Array<Record<string, unknown>>;
  t.is(kept.length, 1);
  t.like(kept[0], { host: '127.0.0.1', port, from: { userId: owner.userId, deviceId: owner.deviceId } });
  t.like(await adLine(stranger.home), { adStatus: 'not-a-contact' });
  t.deepEqual(JSON.parse((await runCli(['ads', '--home', stranger.home, '--json'])).stdout), []);
  const expiresAt = (kept[0]!['expiresAt'] as number) + 200;
  await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now())));
  t.like(await adLine(late.home), { adStatus: 'expired' }, 'an ad read after its expiry is not kept');
  t.deepEqual(JSON.parse((await runCli(['ads', '--home', friend.home, '--json'])).stdout), [], 'an expired ad is dropped');
  t.deepEqual(
    (JSON.parse((await runCli(['contacts', 'list', '--home', friend.home, '--json'])).stdout) as Array<{ userId: string }>).map((c) => c.userId),
    [owner.userId],
  );
});

test('get tunnels through contacts\' give peers, fails over when one is killed, and inbox keeps working', async (t) => {
  const target = await origin(t);
  const a = await addAgent(ctx.server, ctx.dir, 'peer-a');
  const b = await addAgent(ctx.server, ctx.dir, 'peer-b');
  const user = await addAgent(ctx.server, ctx.dir, 'user');
  for (const p of [a, b]) t.is((await runCli(['contacts', 'add', p.userId, '--home', user.home])).code, 0);
  const gives = [];
  for (const p of [a, b]) {
    const g = await startRole(['give', '--listen', '127.0.0.1:0', '--home', p.home, '--allow-private-destinations', '--advertise-to', user.userId], 'advertised');
    t.teardown(() => g.stop('SIGKILL'));
    gives.push(g);
  }
  const get = await startRole(['get', '--listen', '127.0.0.1:0', '--home', user.home]);
  t.teardown(() => get.stop('SIGKILL'));
  // The ads arrive through get's own background inbox; wait until both peers are known.
  for (let i = 0; i < 100 && get.events.filter((e) => e['event'] === 'message' && e['adStatus'] === 'accepted').length < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 300));
  const fetchVia = async (proxyTunnel: boolean) => {
    const res = await request(target, { dispatcher: new ProxyAgent({ uri: get.url, proxyTunnel }) });
    return sha(Buffer.from(await res.body.arrayBuffer()));
  };
  t.is(await fetchVia(true), FILE_SHA, 'CONNECT through get');
  t.is(await fetchVia(false), FILE_SHA, 'HTTP forward through get');
  const socks = await new Promise<Buffer>((resolve, reject) => {
    httpGet(target, { agent: new SocksProxyAgent(`socks5://${new URL(get.url).host}`) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    }).on('error', reject);
  });
  t.is(sha(socks), FILE_SHA, 'SOCKS5 through get');
  // One give peer dies: every request still succeeds through the other.
  await gives[0]!.stop('SIGKILL');
  for (let i = 0; i < 4; i++) t.is(await fetchVia(true), FILE_SHA, `after the kill, request ${i + 1}`);
  // Other commands on the same home keep working while get runs.
  const inbox = await runCli(['inbox', '--home', user.home]);
  t.is(inbox.code, 0, inbox.stderr);
  t.is((await runCli(['send', '--home', a.home, '--to', user.userId, 'hello user'])).code, 0);
  for (let i = 0; i < 100 && !get.events.some((e) => e['event'] === 'message' && e['text'] === 'hello user'); i++) await new Promise((r) => setTimeout(r, 100));
  t.true(get.events.some((e) => e['event'] === 'message' && e['text'] === 'hello user'), 'get received the message in the background');
  t.is(await get.stop('SIGTERM'), 0);
  // get acks each stored batch with its next poll, and what is left when it stops: nothing comes again.
  const api = await user.api();
  t.teardown(() => api.close());
  t.is(await api.poll(0), undefined, 'every message get stored was acked');
});

test("the give binary: nginx's answers without a ticket (inside TLS and plain on the TLS port), forged, foreign and expired tickets, private destinations, bandwidth cap", async (t) => {
  const target = await origin(t);
  const targetHost = new URL(target).host;
  const owner = await addAgent(ctx.server, ctx.dir, 'strict');
  const user = await addAgent(ctx.server, ctx.dir, 'strict-user');
  const strict = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--no-register'], 'listening');
  t.teardown(() => strict.stop('SIGKILL'));
  const peer = announcedPeer(strict);
  const { ticket } = JSON.parse((await runCli(['ticket', '--home', user.home, '--peer', peer.fingerprint, '--json'])).stdout) as { ticket: string };
  const raw = async (data: Buffer | string, over: 'tls' | 'plain' = 'tls') => {
    const { connect } = await import('node:net');
    const { connect: tlsConnect } = await import('node:tls');
    const s = over === 'tls' ? tlsConnect({ host: '127.0.0.1', port: peer.port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : connect(peer.port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(data);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    await Promise.race([new Promise((r) => s.once('close', r)), new Promise((r) => setTimeout(r, 1500))]);
    s.destroy();
    return Buffer.concat(chunks).toString('latin1');
  };
  const auth = (tk: string) => `Proxy-Authorization: Basic ${Buffer.from(`ticket:${tk}`).toString('base64')}\r\n`;
  t.regex(await raw(`CONNECT ${targetHost} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 400 Bad Request\r\nServer: nginx\r\n/);
  t.regex(await raw(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 404 Not Found\r\nServer: nginx\r\n/);
  t.regex(await raw(Buffer.from([5, 1, 0])), /^HTTP\/1\.1 400 Bad Request/);
  t.regex(await raw('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'plain'), /The plain HTTP request was sent to HTTPS port/);
  const [body, sig] = ticket.split('.');
  const forged = `${body}.${Buffer.from(sig!, 'base64url').reverse().toString('base64url')}`;
  t.regex(await raw(`CONNECT ${targetHost} HTTP/1.1\r\nHost: x\r\n${auth(forged)}\r\n`), /^HTTP\/1\.1 400 Bad Request/, 'forged ticket');
  // Without --allow-private-destinations, loopback targets are refused even with a good ticket.
  t.regex(await raw(`CONNECT ${targetHost} HTTP/1.1\r\nHost: x\r\n${auth(ticket)}\r\n`), /^HTTP\/1\.1 403/);
  await strict.stop('SIGTERM');

  // An expired ticket, from a server issuing 4 s tickets (long enough for a loaded machine to use
  // one before it expires).
  const shortLived = await startRole(['server', '--listen', '127.0.0.1:0', '--data-dir', `${ctx.dir}/short-data`, '--ticket-lifetime', '4s']);
  t.teardown(() => shortLived.stop('SIGKILL'));
  const sOwner = await addAgent({ ...shortLived, dataDir: `${ctx.dir}/short-data` }, ctx.dir, 'short-owner');
  const sUser = await addAgent({ ...shortLived, dataDir: `${ctx.dir}/short-data` }, ctx.dir, 'short-user');
  const capped = await startRole(['give', '--listen', '127.0.0.1:0', '--home', sOwner.home, '--allow-private-destinations', '--no-register', '--max-mbps', '8'], 'listening');
  t.teardown(() => capped.stop('SIGKILL'));
  const issued = JSON.parse((await runCli(['ticket', '--home', sUser.home, '--peer', announcedPeer(capped).fingerprint, '--json'])).stdout) as { ticket: string; expiresAt: string };
  const started = performance.now();
  const res = await request(target, { dispatcher: httpsProxy(capped, issued.ticket) });
  const got = Buffer.from(await res.body.arrayBuffer());
  const mbps = (got.length * 8) / ((performance.now() - started) / 1000) / 1e6;
  t.is(sha(got), FILE_SHA);
  t.true(mbps <= 8.8, `the 8 Mbit/s cap holds: ${mbps.toFixed(2)}`);
  await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(issued.expiresAt) - Date.now()) + 200));
  const late = await request(target, { dispatcher: httpsProxy(capped, issued.ticket) }).catch((e: Error) => e);
  t.true(late instanceof Error, 'an expired ticket gets nginx (400 to CONNECT), no tunnel');
});

test('only verifiers post verdicts; get clients only ever receive verified peers; status shows the last verdict', async (t) => {
  const owner = await addAgent(ctx.server, ctx.dir, 'vowner');
  const user = await addAgent(ctx.server, ctx.dir, 'vuser');
  const added = await runCli(['account', 'add', 'checker', '--data-dir', ctx.server.dataDir, '--role', 'verifier', '--password-stdin'], { stdin: 'pw-checker-secret\n' });
  t.is(added.code, 0, added.stderr);
  const verifier = await addAgent(ctx.server, ctx.dir, 'checker', { existing: true });
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations'], 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  const peerId = String(give.events.find((e) => e['event'] === 'registered')!['peerId']);
  const userApi = await user.api();
  const vApi = await verifier.api();
  t.teardown(() => Promise.all([userApi.close(), vApi.close()]));
  await t.throwsAsync(userApi.verdict(peerId, { ok: true, status: 'ok' }), { code: 'LA_ERR_FORBIDDEN' } as never);
  await t.throwsAsync(userApi.peers(), { code: 'LA_ERR_FORBIDDEN' } as never);
  t.deepEqual(await userApi.roundRobin(), [], 'a candidate is not handed to get clients');
  t.like(await vApi.verdict(peerId, { ok: true, status: 'ok', latencyMs: 3 }), { state: 'verified' });
  t.deepEqual(await userApi.roundRobin(), [{ host: '127.0.0.1', port: Number(new URL(give.url).port), protocols: ['connect', 'http', 'socks5'], identityKey: announcedPeer(give).identityKey }]);
  const listed = JSON.parse((await runCli(['peers', '--home', verifier.home, '--json'])).stdout) as { peers: Array<Record<string, unknown>>; verified: number };
  t.true(listed.peers.some((p) => p['peerId'] === peerId && p['state'] === 'verified'));
  t.like(await vApi.verdict(peerId, { ok: false, status: 'timeout' }), { state: 'candidate', lastVerdict: { ok: false, status: 'timeout' } });
  t.deepEqual(await userApi.roundRobin(), [], 'one failure takes it out');
  const ownerApi = await owner.api();
  t.teardown(() => ownerApi.close());
  t.like(await ownerApi.heartbeatPeer(), { lastVerdict: { ok: false, status: 'timeout' } }, 'the give peer learns its verdict with its heartbeat');
});

test('a long transfer through the give binary does not page-fault its read buffers back in after every GC (glibc keeps freed heap)', async (t) => {
  // Without keepFreedHeap (src/core/malloc-tuning.ts), glibc returns the freed 64 KiB read buffers
  // to the kernel at every GC and give faults 130–180 pages back in per MiB relayed; with it, under 10.
  const { connect, createServer: createTcpServer } = await import('node:net');
  const { readFileSync } = await import('node:fs');
  const MIB = 384;
  let received = 0;
  const sink = createTcpServer((s) => {
    s.on('data', (c: Buffer) => {
      received += c.length;
      if (received === MIB * 2 ** 20) s.end('done');
    });
    s.on('error', () => undefined);
  });
  const sinkPort = (await listen(sink, '127.0.0.1', 0)).port;
  t.teardown(() => sink.close());
  const owner = await addAgent(ctx.server, ctx.dir, 'bulk-owner');
  const user = await addAgent(ctx.server, ctx.dir, 'bulk-user');
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--plaintext', '--allow-private-destinations', '--no-register'], 'listening');
  t.teardown(() => give.stop('SIGKILL'));
  const peer = announcedPeer(give);
  const { ticket } = JSON.parse((await runCli(['ticket', '--home', user.home, '--peer', peer.fingerprint, '--json'])).stdout) as { ticket: string };
  const minorFaults = () => {
    const stat = readFileSync(`/proc/${give.child.pid}/stat`, 'latin1');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  };
  const s = connect(peer.port, '127.0.0.1');
  s.on('error', () => undefined);
  s.write(`CONNECT 127.0.0.1:${sinkPort} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}\r\n\r\n`);
  const answer = await new Promise<string>((resolve) => s.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
  t.regex(answer, /^HTTP\/1\.1 200/);
  const chunk = Buffer.alloc(256 * 1024, 7);
  // A first 64 MiB lets the process collect its startup allocation; then the count starts.
  const send = async (mib: number) => {
    for (let sent = 0; sent < mib * 2 ** 20; sent += chunk.length) if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
  };
  await send(64);
  const before = minorFaults();
  await send(MIB - 64);
  await new Promise<void>((resolve) => s.once('data', () => resolve()));
  const perMib = (minorFaults() - before) / (MIB - 64);
  s.destroy();
  t.is(received, MIB * 2 ** 20);
  t.true(perMib < 40, `give faulted ${perMib.toFixed(1)} pages per MiB relayed`);
});
