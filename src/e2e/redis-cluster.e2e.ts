import test from 'ava';
import { multiInstanceTests, scanKeys } from '../testing/compliance/multi-instance.js';
import { startRedisCluster } from '../testing/helpers/redis.js';
import { requireTool } from '../testing/helpers/required-tools.js';

// The multi-instance tests on a Redis Cluster of 3 masters and 3 replicas (issue 20): the
// instances are given the masters' addresses as seeds.

multiInstanceTests(test, async (dir) => {
  await requireTool('redis-server');
  await requireTool('redis-cli');
  const cluster = await startRedisCluster(dir, { masters: 3, replicasPerMaster: 1 });
  return {
    url: cluster.url,
    // Each master holds its slots' keys; a replica holds copies of its master's.
    keys: async () => [...new Set((await Promise.all(cluster.nodes.map((n) => scanKeys(n.url)))).flat())],
    stop: () => cluster.stop(),
  };
});
