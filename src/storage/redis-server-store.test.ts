import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { serverStoreComplianceTests } from '../testing/compliance/server-store.js';
import { REDIS_CLI, startRedis, type RunningRedis } from '../testing/helpers/redis.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import { until } from '../testing/helpers/observe.js';
import { RedisNotifier, redisChannelName } from './redis-notifier.js';
import { RedisServerStore } from './redis-server-store.js';
import { deviceChannel } from './server-store.js';

// The same compliance suite as the memory and LevelDB stores, on a real redis-server the test starts
// (each store under its own key prefix). .ci/run installs redis-server.

const ctx = {} as { redis?: RunningRedis; remove?: () => Promise<void> };
test.before(async () => {
  await requireTool('redis-server');
  const dir = await tempDir('lantern-redis-');
  ctx.remove = dir.remove;
  ctx.redis = await startRedis(dir.path);
});
test.after.always(async () => {
  await ctx.redis?.stop();
  await ctx.remove?.();
});

serverStoreComplianceTests(test, 'RedisServerStore', {
  async setup() {
    if (!ctx.redis) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
    const store = new RedisServerStore({ url: ctx.redis.url, prefix: `t${randomUUID().slice(0, 8)}:` });
    await store.open();
    return store;
  },
  async teardown(store) {
    await store.close();
  },
});

test('a send wakes the recipients in the same script, on the notifier channel', async (t) => {
  if (!ctx.redis) return t.fail('redis-server is not installed');
  const prefix = `w${randomUUID().slice(0, 8)}:`;
  const store = new RedisServerStore({ url: ctx.redis.url, prefix, wakeChannels: (a) => redisChannelName(deviceChannel(a), prefix) });
  const notifier = new RedisNotifier({ url: ctx.redis.url, prefix });
  await Promise.all([store.open(), notifier.open()]);
  try {
    const userId = randomUUID();
    const device = await store.putDevice(userId, { serial: 'aa01', publicKeyPem: 'pem', expiresAt: Date.now() + 60_000 }, Date.now());
    const to = { userId, deviceId: device.deviceId };
    const heard: string[] = [];
    await notifier.subscribe(deviceChannel(to), (m) => heard.push(m));
    const input = { clientId: randomUUID(), digest: 'd', from: { userId: randomUUID(), deviceId: 1 }, type: 0, payload: 'aGk=', sentAt: Date.now(), expiresAt: Date.now() + 60_000 };
    const limits = { maxMessages: 10, maxBytes: 1000 };
    t.deepEqual(await store.enqueue([to], input, limits), { status: 'queued', notified: true });
    t.deepEqual(await store.enqueue([to], input, limits), { status: 'duplicate', notified: true });
    await until('two wake-ups', async () => (heard.length === 2 ? true : undefined), 2000);
    t.deepEqual(heard, ['message', 'message']);
    await t.throwsAsync(store.enqueue([{ userId, deviceId: 9 }], { ...input, clientId: randomUUID() }, limits, { now: Date.now(), activeDevicesOnly: true }), {
      code: 'LA_ERR_RECIPIENT_NOT_FOUND',
    } as never);
    await new Promise((r) => setTimeout(r, 100));
    t.is(heard.length, 2, 'a refused send wakes nobody');
  } finally {
    await Promise.all([store.close(), notifier.close()]);
  }
});

test('with waitReplicas, a send is answered only once a replica has it: on a Redis without replicas it fails, and retries store it once', async (t) => {
  if (!ctx.redis) return t.fail('redis-server is not installed');
  const store = new RedisServerStore({ url: ctx.redis.url, prefix: `r${randomUUID().slice(0, 8)}:`, waitReplicas: 1 });
  await store.open();
  t.teardown(() => store.close());
  const userId = randomUUID();
  const started = Date.now();
  // putDevice is a write that waits too.
  await t.throwsAsync(store.putDevice(userId, { serial: 'aa01', publicKeyPem: 'pem', expiresAt: Date.now() + 60_000 }, Date.now()), {
    code: 'LA_ERR_STORE_UNAVAILABLE',
    message: /reached 0 of 1 replicas/,
  } as never);
  t.true(Date.now() - started >= 1900, 'it waited for the replica');
  const [device] = await store.listDevices(userId);
  const to = { userId, deviceId: device!.deviceId };
  const input = { clientId: randomUUID(), digest: 'd', from: { userId: randomUUID(), deviceId: 1 }, type: 0, payload: 'aGk=', sentAt: Date.now(), expiresAt: Date.now() + 60_000 };
  const limits = { maxMessages: 10, maxBytes: 1000 };
  await t.throwsAsync(store.enqueue([to], input, limits), { code: 'LA_ERR_STORE_UNAVAILABLE' } as never);
  await t.throwsAsync(store.enqueue([to], input, limits), { code: 'LA_ERR_STORE_UNAVAILABLE' } as never, 'the retry waits too');
  t.is((await store.fetch(to, 10)).messages.length, 1, 'stored once');
});

test('with waitReplicas, the writes that ask while a WAIT is out share the next one: 200 concurrent sends, far fewer WAITs, every send stored', async (t) => {
  await requireTool('redis-cli');
  const dir = await tempDir('lantern-redis-replica-');
  t.teardown(() => dir.remove());
  const master = await startRedis(`${dir.path}/master`);
  t.teardown(() => master.stop());
  const replica = await startRedis(`${dir.path}/replica`, { extra: ['--replicaof', '127.0.0.1', String(master.port)] });
  t.teardown(() => replica.stop());
  const cli = (port: number, ...args: string[]) => spawnSync(REDIS_CLI, ['-p', String(port), ...args], { encoding: 'utf8', timeout: 5000 }).stdout;
  await until('the replica in sync', async () => (/master_link_status:up/.test(cli(replica.port, 'info', 'replication')) ? true : undefined), 10_000);
  const waits = () => Number(/cmdstat_wait:calls=(\d+)/.exec(cli(master.port, 'info', 'commandstats'))?.[1] ?? 0);

  const store = new RedisServerStore({ url: master.url, waitReplicas: 1 });
  await store.open();
  t.teardown(() => store.close());
  const userId = randomUUID();
  const device = await store.putDevice(userId, { serial: 'aa01', publicKeyPem: 'pem', expiresAt: Date.now() + 60_000 }, Date.now());
  const to = { userId, deviceId: device.deviceId };
  const before = waits();
  const results = await Promise.all(
    Array.from({ length: 200 }, () =>
      store.enqueue([to], { clientId: randomUUID(), digest: 'd', from: { userId: randomUUID(), deviceId: 1 }, type: 0, payload: 'aGk=', sentAt: Date.now(), expiresAt: Date.now() + 60_000 }, { maxMessages: 1000, maxBytes: 1_000_000 }),
    ),
  );
  const used = waits() - before;
  t.log(`200 sends, ${used} WAITs`);
  t.true(results.every((r) => r.status === 'queued'));
  t.is((await store.queueStats(to)).count, 200);
  t.true(used >= 1 && used <= 50, `${used} WAITs for 200 sends`);
});
