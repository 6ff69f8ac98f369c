import { randomUUID } from 'node:crypto';
import test from 'ava';
import { serverStoreComplianceTests } from '../testing/compliance/server-store.js';
import { redisInstalled, startRedis, type RunningRedis } from '../testing/helpers/redis.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import { RedisServerStore } from './redis-server-store.js';

// The same compliance suite as the memory and LevelDB stores, on a real redis-server the test starts
// (each store under its own key prefix). .ci/run installs redis-server.

const ctx = {} as { redis?: RunningRedis; remove?: () => Promise<void> };
test.before(async () => {
  if (!(await redisInstalled())) return;
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
