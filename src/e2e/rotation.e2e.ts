import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { promisify } from 'node:util';
import test from 'ava';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startRole, startServer } from '../testing/helpers/cli.js';
import { scrape, until } from '../testing/helpers/observe.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// The verified round robin as operators and clients see it (API, DNS, metrics, warnings), driven by
// a continuously running verifier, all as whole binaries.

const INTERVAL_MS = 2000;
const TIMEOUT_MS = 1000;

const metric = async (url: string, name: string) => (await scrape(url))(name);

test('a good give peer enters the round robin over DNS, is evicted within 1.2 × interval + timeout after it dies, and comes back after it recovers', async (t) => {
  const dir = await tempDir('lantern-rotation-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--dns-listen', '127.0.0.1:0', '--zone', 'lantern.test', '--min-rotation', '1', '--metrics-listen', '127.0.0.1:0']);
  t.teardown(() => server.stop());
  const dnsPort = Number(server.events.find((e) => e['event'] === 'dns-listening')?.['port']);
  const metricsUrl = String(server.events.find((e) => e['event'] === 'metrics-listening')?.['url']);
  const resolver = new Resolver({ timeout: 1000, tries: 2 });
  resolver.setServers([`127.0.0.1:${dnsPort}`]);

  const verifier = await addAgent(server, dir.path, 'verifier', { role: 'verifier' });
  const owner = await addAgent(server, dir.path, 'owner');
  const user = await addAgent(server, dir.path, 'user');
  const userApi = await user.api();
  t.teardown(() => userApi.close());
  const giveArgs = (port: number) => ['give', '--listen', `127.0.0.1:${port}`, '--home', owner.home, '--allow-private-destinations'];
  const give = await startRole(giveArgs(0), 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  const port = Number(new URL(give.url).port);
  const peerId = String(give.events.find((e) => e['event'] === 'registered')?.['peerId']);

  // Registered, not verified: its own name resolves, the round robin does not have it.
  t.deepEqual(await resolver.resolve4(`${peerId}.peers.lantern.test`), ['127.0.0.1']);
  await t.throwsAsync(resolver.resolve4('roundrobin.lantern.test'), { code: 'ENODATA' });
  t.deepEqual(await userApi.roundRobin(), [], 'get clients never receive an unverified peer');
  t.is(await metric(metricsUrl, 'lantern_round_robin_below_min'), 1);
  t.regex(server.stderr(), /round robin below --min-rotation/);

  const verify = await startRole(['verify', '--home', verifier.home, '--interval', `${INTERVAL_MS}ms`, '--timeout', `${TIMEOUT_MS}ms`], (v) => v['peerId'] === peerId && v['ok'] === true);
  t.teardown(() => verify.stop());
  // The DNS answers come from a snapshot at most a second old.
  t.deepEqual(await until('the peer in DNS', () => resolver.resolve4('roundrobin.lantern.test').then((a) => (a.length ? a : undefined)), 3000), ['127.0.0.1']);
  const srv = await resolver.resolveSrv('_proxy._tcp.roundrobin.lantern.test');
  t.deepEqual(srv.map((r) => [r.name, r.port]), [[`${peerId}.peers.lantern.test`, port]]);
  const dig = await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(dnsPort), '+short', '+tries=1', 'roundrobin.lantern.test', 'A']).then(
    (r) => r.stdout.trim(),
    () => undefined,
  );
  if (dig === undefined) t.log('dig not installed (apt-get install -y dnsutils); checked with the Node resolver only');
  else t.is(dig, '127.0.0.1');
  t.is(await until('the metric to recover', async () => ((await metric(metricsUrl, 'lantern_round_robin_below_min')) === 0 ? 0 : undefined), 2000), 0);
  t.is(await metric(metricsUrl, 'lantern_round_robin_peers'), 1);

  await give.stop('SIGKILL');
  const killedAt = performance.now();
  await until('eviction', async () => ((await userApi.roundRobin()).length === 0 ? true : undefined), INTERVAL_MS + TIMEOUT_MS + 2000);
  const evictedAfter = performance.now() - killedAt;
  t.log(`evicted ${Math.round(evictedAfter)} ms after kill -9 (interval ${INTERVAL_MS} ms + timeout ${TIMEOUT_MS} ms)`);
  // Passes come within 20 % of the interval (jitter), then the probe's timeout.
  t.true(evictedAfter <= 1.2 * INTERVAL_MS + TIMEOUT_MS + 250, `evicted after ${Math.round(evictedAfter)} ms`);
  await until('the warning again', async () => ((await metric(metricsUrl, 'lantern_round_robin_below_min')) === 1 ? true : undefined), 2000);

  // The owner starts it again on the same port: a new identity key, so it must pass again, and does.
  const again = await startRole(giveArgs(port), 'registered');
  t.teardown(() => again.stop('SIGKILL'));
  t.is(again.events.find((e) => e['event'] === 'registered')?.['peerId'], peerId, 'the registration was still live');
  const restartedAt = performance.now();
  await until('re-admission', async () => ((await userApi.roundRobin()).some((p) => p.port === port) ? true : undefined), INTERVAL_MS + TIMEOUT_MS + 2000);
  t.log(`re-admitted ${Math.round(performance.now() - restartedAt)} ms after it registered again`);
  const peers = await runCli(['peers', '--json', '--home', verifier.home]);
  const listed = (JSON.parse(peers.stdout) as { peers: Array<{ peerId: string; state: string; lastVerdict?: { ok: boolean } }> }).peers;
  t.like(listed.find((p) => p.peerId === peerId), { state: 'verified', lastVerdict: { ok: true } });
});

test('DNS options are checked before anything starts', async (t) => {
  const dir = await tempDir('lantern-rotation-usage-');
  t.teardown(() => dir.remove());
  const alone = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/data`, '--zone', 'lantern.test']);
  t.is(alone.code, 2);
  t.regex(alone.stderr, /LA_ERR_USAGE: --dns-listen and --zone go together/);
  const bad = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/data`, '--dns-listen', '127.0.0.1:0', '--zone', 'bad..zone']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /LA_ERR_USAGE: --zone bad\.\.zone/);
});
