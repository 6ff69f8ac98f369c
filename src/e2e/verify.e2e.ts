import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, sharedServer, startRole } from '../testing/helpers/cli.js';

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
  // A candidate that accepts TCP but relays nothing, and one where nothing listens.
  const mute = createServer((s) => s.on('data', () => undefined));
  const mutePort = (await listen(mute, '127.0.0.1', 0)).port;
  t.teardown(() => mute.close());
  const liarApi = await liar.api();
  const ghostApi = await ghost.api();
  const userApi = await user.api();
  t.teardown(() => Promise.all([liarApi.close(), ghostApi.close(), userApi.close()]));
  await liarApi.registerPeer({ port: mutePort, protocols: ['connect'] });
  // A candidate that relays CONNECT but has no working SOCKS5 side, while it registers one.
  const half = createHttpServer((_req, res) => res.end());
  half.on('connect', (req: IncomingMessage, client: Socket) => {
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host!, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', () => client.destroy());
  });
  const halfPort = (await listen(half, '127.0.0.1', 0)).port;
  t.teardown(() => half.close());
  const halfOwner = await addAgent(ctx.server, ctx.dir, 'half');
  const halfApi = await halfOwner.api();
  t.teardown(() => halfApi.close());
  await halfApi.registerPeer({ port: halfPort, protocols: ['connect', 'socks5'] });
  const closed = createServer();
  const deadPort = (await listen(closed, '127.0.0.1', 0)).port;
  await new Promise((r) => closed.close(r));
  await ghostApi.registerPeer({ port: deadPort, protocols: ['connect'] });

  const run = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '2s']);
  t.is(run.code, 0, run.stderr);
  const verdicts = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { port: number; ok: boolean; status: string; state: string; latencyMs?: number });
  const byPort = new Map(verdicts.map((v) => [v.port, v]));
  const givePort = Number(new URL(give.url).port);
  t.like(byPort.get(givePort), { ok: true, status: 'ok', state: 'verified' });
  t.true((byPort.get(givePort)?.latencyMs ?? -1) >= 0);
  t.like(byPort.get(mutePort), { ok: false, state: 'candidate' }, 'accepting TCP is not enough');
  t.like(byPort.get(deadPort), { ok: false, status: 'refused', state: 'candidate' });
  t.like(byPort.get(halfPort), { ok: false, status: 'socks5-failed', state: 'candidate' }, 'every protocol it registers must work');
  t.deepEqual((await userApi.roundRobin()).map((p) => p.port), [givePort], 'get clients only receive the verified peer');

  await give.stop('SIGKILL');
  const again = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '2s']);
  const afterKill = again.stdout.trim().split('\n').map((l) => JSON.parse(l) as { port: number; ok: boolean; status: string });
  t.like(afterKill.find((v) => v.port === givePort), { ok: false, status: 'refused' });
  t.deepEqual(await userApi.roundRobin(), [], 'a verified peer that dies is evicted on the next pass');
  const denied = await runCli(['verify', '--once', '--home', user.home]);
  t.is(denied.code, 4);
  t.regex(denied.stderr, /LA_ERR_FORBIDDEN/);
});
