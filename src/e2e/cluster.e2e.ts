import test from 'ava';
import { multiInstanceTests, scanKeys } from '../testing/compliance/multi-instance.js';
import { startRedis } from '../testing/helpers/redis.js';
import { requireTool } from '../testing/helpers/required-tools.js';

// Several server processes on one Redis act as one server (redis-cluster.e2e: on a Redis Cluster).

multiInstanceTests(test, async (dir) => {
  await requireTool('redis-server');
  const redis = await startRedis(dir);
  return { url: redis.url, keys: () => scanKeys(redis.url), stop: () => redis.stop() };
});
