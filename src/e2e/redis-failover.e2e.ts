import { spawnSync } from 'node:child_process';
import test from 'ava';
import { systemClock } from '../core/clock.js';
import { ApiClient } from '../net/api-client.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer, type RunningServer } from '../testing/helpers/cli.js';
import { REDIS_CLI, startRedisCluster } from '../testing/helpers/redis.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { messageLoad } from '../testing/helpers/message-load.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Issue 20: kill -9 of a Redis Cluster master while 16 clients send and receive through two
// server instances with --store-wait-replicas 1. The cluster promotes the master's replica, the
// servers follow by themselves, and every send that was answered is delivered. The promoted master
// has no replica of its own, so sends to its slots are refused from then on; the other shards go on
// (the waiting writes have their own connection: a WAIT stalls nothing else).

const PAIRS = 8;
const LOAD_MS = 12_000;
const KILL_AT_MS = 2000;

test('kill -9 of a Redis Cluster master under load: a replica takes over and, with --store-wait-replicas 1, no answered message is lost', async (t) => {
  await requireTool('redis-server');
  await requireTool('redis-cli');
  const dir = await tempDir('lantern-redis-failover-');
  t.teardown(() => dir.remove());
  const cluster = await startRedisCluster(`${dir.path}/redis`, { masters: 3, replicasPerMaster: 1 });
  t.teardown(() => cluster.stop());
  const extra = ['--store', cluster.url, '--store-wait-replicas', '1', '--rate-pair', '100000/100000', '--rate-recipient-bytes', '1000000000/1000000000'];
  const servers: RunningServer[] = [await startServer(`${dir.path}/data`, extra)];
  servers.push(await startServer(`${dir.path}/data`, extra));
  t.teardown(async () => {
    for (const s of servers) await s.stop('SIGKILL');
  });
  const names = Array.from({ length: PAIRS * 2 }, (_, i) => `user${i}`);
  for (const name of names) {
    const added = await runCli(['account', 'add', name, '--store', cluster.url, '--password-stdin'], { stdin: `pw-${name}-secret\n` });
    t.is(added.code, 0, added.stderr);
  }
  const agents = await Promise.all(names.map((n, i) => addAgent(servers[i % 2]!, dir.path, n, { existing: true })));
  const api = (i: number) => new ApiClient({ clock: systemClock, auth: agents[i]!.signer }, { server: servers[i % 2]!.url });

  const clients = agents.map((_, i) => api(i));
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const load = messageLoad(Array.from({ length: PAIRS }, (_, p) => ({ sender: clients[p]!, receiver: clients[PAIRS + p]!, to: agents[PAIRS + p]!.userId })));
  await new Promise((r) => setTimeout(r, KILL_AT_MS));
  const role = (port: number) => spawnSync(REDIS_CLI, ['-p', String(port), 'role'], { encoding: 'utf8', timeout: 5000 }).stdout.split('\n')[0];
  const master = cluster.nodes.find((n) => role(n.port) === 'master')!;
  const answeredBeforeKill = load.answered.size;
  master.child.kill('SIGKILL');
  const killedAt = Date.now();
  await new Promise((r) => setTimeout(r, LOAD_MS - KILL_AT_MS));
  const lost = await load.finish(30_000);
  const promoted = cluster.nodes.filter((n) => n !== master && role(n.port) === 'master').length;
  t.log(`${load.answered.size} sends answered (${answeredBeforeKill} before the kill), ${load.sendFailures()} failed attempts retried, ${load.received.size} received, ${lost.length} lost; ${Math.round((Date.now() - killedAt) / 1000)} s after the kill ${promoted} masters`);
  t.is(promoted, 3, "the killed master's replica was promoted");
  t.true(load.answered.size - answeredBeforeKill > 100, 'the load went on after the kill');
  t.deepEqual(lost, []);
});
