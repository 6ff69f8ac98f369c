import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { PeerIdentity } from '../crypto/peer-identity.js';
import { listen } from '../net/listen.js';
import { announcedPeer } from '../testing/helpers/give-client.js';
import { connectRelay } from '../testing/helpers/connect-relay.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, runCliInProcess, sharedServer, startRole } from '../testing/helpers/cli.js';

// The verifier as a whole binary against real give peers and fake candidates.

const ctx = sharedServer(test, ['--rate-login-address', '1000/100']);

test('verify --once admits a working give peer, never a candidate that does not relay, and evicts a peer that dies', async (t) => {
  const added = await runCli(['account', 'add', 'verifier', '--data-dir', ctx.server.dataDir, '--role', 'verifier', '--password-stdin'], { stdin: 'pw-verifier-secret\n' });
  t.is(added.code, 0, added.stderr);
  const verifier = await addAgent(ctx.server, ctx.dir, 'verifier', { existing: true });
  const owner = await addAgent(ctx.server, ctx.dir, 'good-owner');
  const liar = await addAgent(ctx.server, ctx.dir, 'liar');
  const ghost = await addAgent(ctx.server, ctx.dir, 'ghost');
  const user = await addAgent(ctx.server, ctx.dir, 'user');
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations'], 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  // A candidate that accepts TCP but speaks nothing, and one where nothing listens.
  const mute = createServer((s) => s.on('data', () => undefined));
  const mutePort = (await listen(mute, '127.0.0.1', 0)).port;
  t.teardown(() => mute.close());
  const liarApi = await liar.api();
  const ghostApi = await ghost.api();
  const userApi = await user.api();
  t.teardown(() => Promise.all([liarApi.close(), ghostApi.close(), userApi.close()]));
  await liarApi.registerPeer({ port: mutePort, protocols: ['connect'], identityKey: new PeerIdentity().publicKey });
  const half = await connectRelay(t);
  const halfOwner = await addAgent(ctx.server, ctx.dir, 'half');
  const halfApi = await halfOwner.api();
  t.teardown(() => halfApi.close());
  await halfApi.registerPeer({ port: half.port, protocols: ['connect', 'socks5'], identityKey: half.identity.publicKey });
  const closed = createServer();
  const deadPort = (await listen(closed, '127.0.0.1', 0)).port;
  await new Promise((r) => closed.close(r));
  await ghostApi.registerPeer({ port: deadPort, protocols: ['connect'], identityKey: new PeerIdentity().publicKey });

  const run = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '2s']);
  t.is(run.code, 1, 'some peers failed');
  const verdicts = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { port: number; ok: boolean; status: string; state: string; latencyMs?: number });
  const byPort = new Map(verdicts.map((v) => [v.port, v]));
  const givePort = Number(new URL(give.url).port);
  t.like(byPort.get(givePort), { ok: true, status: 'ok', state: 'verified' });
  t.true((byPort.get(givePort)?.latencyMs ?? -1) >= 0);
  t.like(byPort.get(mutePort), { ok: false, state: 'candidate' }, 'accepting TCP is not enough');
  t.like(byPort.get(deadPort), { ok: false, status: 'refused', state: 'candidate' });
  t.like(byPort.get(half.port), { ok: false, status: 'socks5-failed', state: 'candidate' }, 'every protocol it registers must work');
  // (Other tests of this file share the server: look at this test's peers only.)
  const rotation = (await userApi.roundRobin()).map((p) => p.port);
  t.true(rotation.includes(givePort));
  t.deepEqual(rotation.filter((p) => [mutePort, deadPort, half.port].includes(p)), [], 'get clients only receive verified peers');

  await give.stop('SIGKILL');
  const again = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '2s']);
  const afterKill = again.stdout.trim().split('\n').map((l) => JSON.parse(l) as { port: number; ok: boolean; status: string });
  t.like(afterKill.find((v) => v.port === givePort), { ok: false, status: 'refused' });
  t.false((await userApi.roundRobin()).some((p) => p.port === givePort), 'a verified peer that dies is evicted on the next pass');
  const denied = await runCli(['verify', '--once', '--home', user.home]);
  t.is(denied.code, 4);
  t.regex(denied.stderr, /LA_ERR_FORBIDDEN/);
});

test("a registration pointing at another peer's proxy, at a plain proxy, or at a plaintext give peer is never admitted", async (t) => {
  const verifier = await addAgent(ctx.server, ctx.dir, 'verifier-2', { role: 'verifier' });
  const alice = await addAgent(ctx.server, ctx.dir, 'alice-give');
  const mallory = await addAgent(ctx.server, ctx.dir, 'mallory-give');
  const plain = await addAgent(ctx.server, ctx.dir, 'plain-proxy');
  const clear = await addAgent(ctx.server, ctx.dir, 'clear-give');
  const good = await startRole(['give', '--listen', '127.0.0.1:0', '--home', alice.home, '--allow-private-destinations'], 'registered');
  t.teardown(() => good.stop('SIGKILL'));
  const alicePort = Number(new URL(good.url).port);
  // Mallory's own give peer registers, claiming (as if a router forwarded it) Alice's port.
  const claimed = await startRole(['give', '--listen', '127.0.0.1:0', '--home', mallory.home, '--allow-private-destinations', '--public-port', String(alicePort)], 'registered');
  t.teardown(() => claimed.stop('SIGKILL'));
  t.is((claimed.events.find((e) => e['event'] === 'registered') as { port: number }).port, alicePort);
  const plaintext = await startRole(['give', '--listen', '127.0.0.1:0', '--home', clear.home, '--allow-private-destinations', '--plaintext'], 'registered');
  t.teardown(() => plaintext.stop('SIGKILL'));
  // A stock CONNECT proxy (no TLS) that relays fine but is no give peer.
  const stock = createHttpServer((_req, res) => res.end());
  stock.on('connect', (req: IncomingMessage, client: Socket) => {
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
  });
  const stockPort = (await listen(stock, '127.0.0.1', 0)).port;
  t.teardown(() => stock.close());
  const plainApi = await plain.api();
  t.teardown(() => plainApi.close());
  const plainId = (await plainApi.registerPeer({ port: stockPort, protocols: ['connect'], identityKey: new PeerIdentity().publicKey })).peerId;
  // Nor can anyone register Alice's key for a relay of their own (to be verified through hers).
  await t.throwsAsync(plainApi.registerPeer({ port: stockPort, protocols: ['connect'], identityKey: announcedPeer(good).identityKey }), { code: 'LA_ERR_PEER_IDENTITY_TAKEN' } as never);
  const malloryId = (claimed.events.find((e) => e['event'] === 'registered') as { peerId: string }).peerId;
  const clearId = (plaintext.events.find((e) => e['event'] === 'registered') as { peerId: string }).peerId;
  const aliceId = (good.events.find((e) => e['event'] === 'registered') as { peerId: string } | undefined)?.peerId;

  const run = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '2s']);
  t.is(run.code, 1, 'some peers failed: verify --once says so in its exit code');
  const verdicts = new Map(run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { peerId: string; port: number; ok: boolean; status: string; state: string }).map((v) => [v.peerId, v]));
  t.like(verdicts.get(malloryId), { ok: false, status: 'identity-mismatch', state: 'candidate' }, "Alice's TLS key is not Mallory's");
  t.like(verdicts.get(plainId), { ok: false, status: 'tls-failed', state: 'candidate' });
  t.like(verdicts.get(clearId), { ok: false, status: 'plaintext', state: 'candidate' }, 'a plaintext peer is never admitted');
  const alice2 = [...verdicts.values()].find((v) => v.port === alicePort && v.peerId !== malloryId);
  t.like(alice2, { ok: true, status: 'ok', state: 'verified' });
  if (aliceId) t.is(alice2?.peerId, aliceId);

  // On a terminal, --once redraws one progress line, keeps failures above it and ends with a summary.
  const { code, stdout: out, stderr: err } = await runCliInProcess(['verify', '--once', '--home', verifier.home, '--timeout', '2s'], { terminal: true });
  t.is(code, 1, err);
  t.regex(err, /^verifying \d+ peer\(s\)…/);
  t.true(err.includes('\r\x1b[K'), 'the progress line is redrawn in place');
  t.regex(err, /\[(\d+)\/\1\] \d+ passed, [1-9]\d* failed\n$/, 'it ends at N/N');
  t.regex(err, new RegExp(`FAIL ${malloryId.slice(0, 8)} 127\\.0\\.0\\.1:${alicePort} identity-mismatch`), 'failures stay above the progress line');
  t.regex(out, /^verified \d+ peer\(s\): \d+ passed, \d+ failed \(.+\); median latency [\d.]+ ms\n$/);
  t.regex(out, /identity-mismatch 1/);
  t.regex(out, /tls-failed 1/);
});
