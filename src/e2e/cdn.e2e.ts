import { writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import test from 'ava';
import { untilPollsHeld } from '../testing/helpers/observe.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { startNginx } from '../testing/helpers/nginx.js';
import { RawPeer } from '../testing/helpers/peerjs-client.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Behind a CDN: Debian's nginx terminating TLS and buffering, in front of the built server. No
// client certificate reaches the server; request signatures carry the authentication through.

async function account(dataDir: string, name: string): Promise<void> {
  const added = await runCli(['account', 'add', name, '--data-dir', dataDir, '--password-stdin'], { stdin: `pw-${name}-secret\n` });
  if (added.code !== 0) throw new Error(added.stderr);
}

const get = (port: number, path: string, host: string, ca: string) =>
  new Promise<{ status: number; body: string }>((resolve, reject) =>
    request({ host: '127.0.0.1', port, path, servername: 'localhost', headers: { host }, ca }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end(),
  );


test('through a TLS-terminating, buffering nginx: login, keys, send, long-poll, ack and the PeerJS WebSocket', async (t) => {
  await requireTool('nginx');
  const dir = await tempDir('lantern-cdn-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => server.stop());
  const nginx = await startNginx(`${dir.path}/nginx`, [{ serverName: 'localhost', defaultServer: true, upstream: Number(new URL(server.url).port) }]);
  t.teardown(() => nginx.stop());
  const caFile = `${dir.path}/cdn-ca.pem`;
  await writeFile(caFile, nginx.ca);
  const cdn = `https://localhost:${nginx.port}`;
  const homes: Record<string, string> = {};
  const ids: Record<string, string> = {};
  for (const name of ['alice', 'bob']) {
    await account(`${dir.path}/data`, name);
    homes[name] = `${dir.path}/home-${name}`;
    // Login makes a CSR and uploads Signal keys (PUT /v1/keys), all through nginx.
    const login = await runCli(['login', '--server', cdn, '--user', name, '--password-stdin', '--home', homes[name]!, '--ca', caFile, '--json'], { stdin: `pw-${name}-secret\n` });
    t.is(login.code, 0, login.stderr);
    ids[name] = String((JSON.parse(login.stdout) as { userId: string }).userId);
  }
  // A long-poll held across the proxy, answered by a send that fetches bob's keys (GET /v1/keys).
  const waiting = runCli(['inbox', '--wait', '20', '--home', homes['bob']!, '--json']);
  await untilPollsHeld(server);
  const sent = await runCli(['send', '--to', ids['bob']!, 'through the CDN', '--home', homes['alice']!, '--json']);
  t.is(sent.code, 0, sent.stderr);
  const got = await waiting;
  t.is(got.code, 0, got.stderr);
  t.like(JSON.parse(got.stdout.trim()), { text: 'through the CDN', encrypted: true, from: { userId: ids['alice'] } });
  // Acked: nothing comes again.
  const again = await runCli(['inbox', '--wait', '1', '--home', homes['bob']!, '--json']);
  t.is(again.stdout.trim(), '');
  t.regex((await runCli(['whoami', '--home', homes['alice']!])).stdout, new RegExp(ids['alice']!));

  // The PeerJS WebSocket through nginx: WSS to nginx, plain WS behind it.
  const ws = (id: string) => new RawPeer(`wss://localhost:${nginx.port}/peerjs?key=peerjs&id=${id}&token=t${id}`, { ca: nginx.ca });
  const a = ws('cdn-a');
  const b = ws('cdn-b');
  t.teardown(() => (a.close(), b.close()));
  await a.next((f) => f['type'] === 'OPEN');
  await b.next((f) => f['type'] === 'OPEN');
  a.send({ type: 'OFFER', dst: 'cdn-b', payload: { sdp: 'x' } });
  t.like(await b.next((f) => f['type'] === 'OFFER'), { src: 'cdn-a', payload: { sdp: 'x' } });
});

test('domain fronting: the client dials and sends SNI for the front; only the Host header selects the lantern server', async (t) => {
  await requireTool('nginx');
  const dir = await tempDir('lantern-front-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`);
  t.teardown(() => server.stop());
  // One TLS port, two names: `localhost` (the front everyone sees) serves a page of its own.
  const nginx = await startNginx(`${dir.path}/nginx`, [
    { serverName: 'localhost', defaultServer: true, staticBody: 'an innocent front site' },
    { serverName: 'lantern.internal', upstream: Number(new URL(server.url).port) },
  ]);
  t.teardown(() => nginx.stop());
  const caFile = `${dir.path}/cdn-ca.pem`;
  await writeFile(caFile, nginx.ca);
  t.deepEqual(await get(nginx.port, '/v1/health', 'localhost', nginx.ca), { status: 200, body: 'an innocent front site' });
  t.is((await get(nginx.port, '/v1/health', 'lantern.internal', nginx.ca)).status, 200);
  t.regex((await get(nginx.port, '/v1/health', 'lantern.internal', nginx.ca)).body, /"ok":true/);

  await account(`${dir.path}/data`, 'carol');
  await account(`${dir.path}/data`, 'dave');
  const home = (n: string) => `${dir.path}/home-${n}`;
  // Without fronting, the name on the wire reaches only the front site.
  const direct = await runCli(['login', '--server', `https://localhost:${nginx.port}`, '--user', 'carol', '--password-stdin', '--home', `${dir.path}/home-x`, '--ca', caFile], { stdin: 'pw-carol-secret\n' });
  t.not(direct.code, 0);
  const ids: Record<string, string> = {};
  for (const name of ['carol', 'dave']) {
    const login = await runCli(
      ['login', '--server', 'https://lantern.internal', '--front', `localhost:${nginx.port}`, '--user', name, '--password-stdin', '--home', home(name), '--ca', caFile, '--json'],
      { stdin: `pw-${name}-secret\n` },
    );
    t.is(login.code, 0, login.stderr);
    ids[name] = String((JSON.parse(login.stdout) as { userId: string }).userId);
  }
  // Every later command of the home goes through the front too.
  const sent = await runCli(['send', '--to', ids['dave']!, 'fronted', '--home', home('carol')]);
  t.is(sent.code, 0, sent.stderr);
  const got = await runCli(['inbox', '--wait', '10', '--home', home('dave'), '--json']);
  t.like(JSON.parse(got.stdout.trim()), { text: 'fronted', from: { userId: ids['carol'] } });
  // What nginx saw: TLS SNI always the front, the Host header the lantern server.
  const seen = (await nginx.accessLog('lantern.internal')).trim().split('\n');
  t.true(seen.length >= 6, seen.join('\n'));
  for (const line of seen) t.regex(line, /^localhost lantern\.internal (GET|POST|PUT) \/v1\//);
});
