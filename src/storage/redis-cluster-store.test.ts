import { randomUUID } from 'node:crypto';
import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { serverStoreComplianceTests } from '../testing/compliance/server-store.js';
import { startRedisCluster, type RunningRedisCluster } from '../testing/helpers/redis.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import { until } from '../testing/helpers/observe.js';
import { RedisNotifier, redisChannelName } from './redis-notifier.js';
import { RedisServerStore } from './redis-server-store.js';
import { deviceChannel } from './server-store.js';
import { isCluster, openRedis } from './redis-client.js';
import { RedisPeerjsDirectory } from './peerjs-directory.js';

// The store compliance suite on a real Redis Cluster of three masters (Debian's redis-server,
// made with redis-cli --cluster create): every script's keys share one hash tag, and commands over
// keys of several slots go to each slot's node. .ci/run installs redis-server and redis-tools.

const ctx = {} as { cluster?: RunningRedisCluster; remove?: () => Promise<void> };
test.before(async () => {
  await requireTool('redis-server');
  await requireTool('redis-cli');
  const dir = await tempDir('lantern-redis-cluster-');
  ctx.remove = dir.remove;
  ctx.cluster = await startRedisCluster(dir.path, { masters: 3 });
});
test.after.always(async () => {
  await ctx.cluster?.stop();
  await ctx.remove?.();
});

serverStoreComplianceTests(test, 'RedisServerStore on a 3-master Redis Cluster', {
  async setup() {
    if (!ctx.cluster) throw new Error('the Redis Cluster did not start');
    const store = new RedisServerStore({ url: ctx.cluster.url, prefix: `t${randomUUID().slice(0, 8)}:` });
    await store.open();
    return store;
  },
  async teardown(store) {
    await store.close();
  },
});

test('one node of a cluster in the URL is enough: the client sees it is a cluster; a /DB is refused', async (t) => {
  const one = `redis://127.0.0.1:${ctx.cluster!.nodes[1]!.port}`;
  const client = await openRedis({ url: one }, { lazyConnect: true });
  t.teardown(() => client.disconnect());
  t.true(isCluster(client));
  // Keys in all three masters' slots, through the one seed.
  for (const k of ['a', 'b', 'c', 'd', 'e', 'f']) await client.set(`seed:${k}`, k);
  t.deepEqual(await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((k) => client.get(`seed:${k}`))), ['a', 'b', 'c', 'd', 'e', 'f']);
  await t.throwsAsync(openRedis({ url: `${one}/2` }, { lazyConnect: true }), { code: 'LA_ERR_USAGE' } as never);
});

test('a send wakes the recipients over sharded pub/sub, from the script, on the slot of their keys; publish counts listeners on any node', async (t) => {
  const prefix = `w${randomUUID().slice(0, 8)}:`;
  const store = new RedisServerStore({ url: ctx.cluster!.url, prefix, wakeChannels: (a) => redisChannelName(deviceChannel(a), prefix) });
  const notifier = new RedisNotifier({ url: ctx.cluster!.url, prefix });
  const other = new RedisNotifier({ url: `redis://127.0.0.1:${ctx.cluster!.nodes[2]!.port}`, prefix });
  await Promise.all([store.open(), notifier.open(), other.open()]);
  try {
    const heard: string[] = [];
    const users = Array.from({ length: 6 }, () => randomUUID());
    for (const userId of users) {
      const device = await store.putDevice(userId, { serial: 'aa01', publicKeyPem: 'pem', expiresAt: Date.now() + 60_000 }, Date.now());
      const to = { userId, deviceId: device.deviceId };
      await notifier.subscribe(deviceChannel(to), (m) => heard.push(`${userId} ${m}`));
      const input = { clientId: randomUUID(), digest: 'd', from: { userId: randomUUID(), deviceId: 1 }, type: 0, payload: 'aGk=', sentAt: Date.now(), expiresAt: Date.now() + 60_000 };
      t.deepEqual(await store.enqueue([to], input, { maxMessages: 10, maxBytes: 1000 }), { status: 'queued', notified: true });
    }
    await until('six wake-ups', async () => (heard.length === 6 ? true : undefined), 5000);
    t.deepEqual(heard.sort(), users.map((u) => `${u} message`).sort(), 'each user woken once, whichever master holds their slot');
    // A publish from another instance (another seed) counts the listener, wherever its shard is.
    const got: string[] = [];
    await notifier.subscribe('peerjs:someone', (m) => got.push(m));
    t.is(await other.publish('peerjs:someone', 'frame'), 1);
    t.is(await other.publish('peerjs:nobody', 'frame'), 0);
    await until('the frame', async () => (got.length === 1 ? true : undefined), 5000);
  } finally {
    await Promise.all([store.close(), notifier.close(), other.close()]);
  }
});

test('the PeerJS directory on the cluster: ids taken once, a limit across instances, renewals, expiry and the list', async (t) => {
  const prefix = `p${randomUUID().slice(0, 8)}:`;
  const [one, two] = [new RedisPeerjsDirectory({ url: ctx.cluster!.url, prefix }), new RedisPeerjsDirectory({ url: `redis://127.0.0.1:${ctx.cluster!.nodes[2]!.port}`, prefix })];
  await Promise.all([one.open(), two.open()]);
  t.teardown(() => Promise.all([one.close(), two.close()]));
  t.is(await one.claim('a', 'ta', 60_000, 2), 'claimed');
  t.is(await two.claim('a', 'other', 60_000, 2), 'taken', 'another token, another instance');
  t.is(await two.claim('b', 'tb', 60_000, 2), 'claimed');
  t.is(await one.claim('c', 'tc', 60_000, 2), 'full', 'two ids held across the instances');
  t.is(await two.claim('a', 'ta', 60_000, 2), 'claimed', 'a renewal is never refused');
  t.deepEqual((await one.list()).sort(), ['a', 'b']);
  await one.release('b', 'not-its-token');
  t.is(await one.claim('c', 'tc', 60_000, 2), 'full', 'only the holder releases');
  await one.release('b', 'tb');
  t.is(await one.claim('c', 'tc', 300, 2), 'claimed');
  t.deepEqual((await two.list()).sort(), ['a', 'c']);
  await new Promise((r) => setTimeout(r, 600));
  t.deepEqual(await two.list(), ['a'], 'an unrenewed claim expires');
  t.is(await two.claim('d', 'td', 60_000, 2), 'claimed', 'and its place is free');
});
