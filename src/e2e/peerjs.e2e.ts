import { readFile } from 'node:fs/promises';
import test from 'ava';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { RawPeer } from '../testing/helpers/peerjs-client.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// The broker inside the built server: default PeerJS client settings, WSS with TLS, a custom path
// and key, tickets required, and the API beside it.

const wsUrl = (base: string, id: string, token: string, key = 'peerjs', path = '/') =>
  `${base.replace(/^http/, 'ws')}${path}peerjs?key=${key}&id=${encodeURIComponent(id)}&token=${encodeURIComponent(token)}&version=1.5.5`;

test('the server is a PeerJS broker at the default client settings, beside the API', async (t) => {
  const dir = await tempDir('lantern-peerjs-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`);
  t.teardown(() => server.stop());
  const a = new RawPeer(wsUrl(server.url, 'alice-1', 'ta'));
  const b = new RawPeer(wsUrl(server.url, 'bob-1', 'tb'));
  t.teardown(() => (a.close(), b.close()));
  await a.next((f) => f['type'] === 'OPEN');
  await b.next((f) => f['type'] === 'OPEN');
  a.send({ type: 'OFFER', dst: 'bob-1', payload: { sdp: { type: 'offer', sdp: 'v=0' } } });
  t.like(await b.next((f) => f['type'] === 'OFFER'), { src: 'alice-1', payload: { sdp: { type: 'offer', sdp: 'v=0' } } });
  const id = await fetch(`${server.url}/peerjs/id`);
  t.regex(await id.text(), /^[0-9a-f-]{36}$/);
  t.is((await fetch(`${server.url}/v1/health`)).status, 200, 'the API still answers');
  t.is((await fetch(`${server.url}/peerjs/peers`)).status, 401);
  const other = new RawPeer(`${server.url.replace(/^http/, 'ws')}/somewhere-else`);
  const closed = await other.closed;
  t.not(closed.code, 1000, 'an upgrade on another path is refused');
  t.deepEqual(other.frames, []);
});

test('WSS when the server has TLS; a custom path and key; discovery when allowed', async (t) => {
  const dir = await tempDir('lantern-peerjs-tls-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--tls-self-signed', '--peerjs-path', 'signal', '--peerjs-key', 'k3y', '--peerjs-allow-discovery']);
  t.teardown(() => server.stop());
  t.true(server.url.startsWith('https://'));
  const ca = await readFile(`${dir.path}/data/ca.pem`, 'utf8');
  const a = new RawPeer(wsUrl(server.url, 'secure-a', 't', 'k3y', '/signal/'), { ca });
  t.teardown(() => a.close());
  t.deepEqual(await a.next(() => true), { type: 'OPEN' });
  t.true(a.socket.url.startsWith('wss://'));
  const wrongKey = new RawPeer(wsUrl(server.url, 'secure-b', 't', 'peerjs', '/signal/'), { ca });
  t.like(await wrongKey.next(() => true), { type: 'ERROR', payload: { msg: 'Invalid key provided' } });
  const { request } = await import('node:https');
  const peers = await new Promise<string>((resolve, reject) =>
    request(`${server.url}/signal/k3y/peers`, { ca }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end(),
  );
  t.deepEqual(JSON.parse(peers), ['secure-a']);
});

test('--peerjs-require-auth: only a PeerJS ticket as the token registers an id', async (t) => {
  const dir = await tempDir('lantern-peerjs-auth-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--peerjs-require-auth']);
  t.teardown(() => server.stop());
  const alice = await addAgent(server, dir.path, 'alice');
  const refused = async (token: string) => {
    const p = new RawPeer(wsUrl(server.url, `x${Math.random().toString(36).slice(2)}`, token));
    const frame = await p.next(() => true);
    await p.closed;
    return frame;
  };
  t.like(await refused('random-token'), { type: 'ERROR', payload: { msg: 'Invalid token: this broker requires a ticket (lantern-agent ticket --for peerjs)' } });
  const proxyTicket = (await runCli(['ticket', '--home', alice.home, '--peer', 'AAAAAAAAAAAAAAAAAAAAAA'])).stdout.trim();
  t.like(await refused(proxyTicket), { type: 'ERROR' }, 'a proxy ticket is not a broker ticket');
  const ticket = await runCli(['ticket', '--for', 'peerjs', '--home', alice.home]);
  t.is(ticket.code, 0, ticket.stderr);
  const ok = new RawPeer(wsUrl(server.url, 'alice-phone', ticket.stdout.trim()));
  t.teardown(() => ok.close());
  t.deepEqual(await ok.next(() => true), { type: 'OPEN' });
});
