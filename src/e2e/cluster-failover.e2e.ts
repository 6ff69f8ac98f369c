import { writeFile } from 'node:fs/promises';
import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { systemClock } from '../core/clock.js';
import { ApiClient, createDispatcher } from '../net/api-client.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer, type RunningServer } from '../testing/helpers/cli.js';
import { startNginx } from '../testing/helpers/nginx.js';
import { startRedis } from '../testing/helpers/redis.js';
import { messageLoad } from '../testing/helpers/message-load.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// kill -9 of one of three instances during a send/receive load, behind a load balancer (nginx):
// clients move to the other instances and no answered message is lost.

const PAIRS = 3;
const LOAD_MS = 6000;
const KILL_AT_MS = 2000;

test('kill -9 of one instance under load: clients move to the others, no answered message is lost', async (t) => {
  await requireTool('redis-server', 'nginx');
  const dir = await tempDir('lantern-failover-');
  t.teardown(() => dir.remove());
  const redis = await startRedis(`${dir.path}/redis`);
  t.teardown(() => redis.stop());
  const extra = ['--store', redis.url, '--rate-pair', '100000/100000', '--rate-recipient-bytes', '1000000000/1000000000'];
  const servers: RunningServer[] = [await startServer(`${dir.path}/data`, extra)];
  servers.push(await startServer(`${dir.path}/data`, extra), await startServer(`${dir.path}/data`, extra));
  t.teardown(async () => {
    for (const s of servers) await s.stop('SIGKILL');
  });
  const nginx = await startNginx(`${dir.path}/nginx`, [{ serverName: 'localhost', defaultServer: true, upstream: servers.map((s) => Number(new URL(s.url).port)) }]);
  t.teardown(() => nginx.stop());
  const lb = `https://localhost:${nginx.port}`;
  await writeFile(`${dir.path}/ca.pem`, nginx.ca);

  const names = Array.from({ length: PAIRS * 2 }, (_, i) => `user${i}`);
  for (const name of names) {
    const added = await runCli(['account', 'add', name, '--store', redis.url, '--password-stdin'], { stdin: `pw-${name}-secret\n` });
    t.is(added.code, 0, added.stderr);
  }
  const agents = await Promise.all(names.map((n) => addAgent(servers[0]!, dir.path, n, { existing: true })));
  const dispatcher = createDispatcher({ ca: nginx.ca });
  t.teardown(() => dispatcher.close());
  const api = (i: number) => new ApiClient({ clock: systemClock, auth: agents[i]!.signer }, { server: lb, dispatcher });

  const load = messageLoad(Array.from({ length: PAIRS }, (_, p) => ({ sender: api(p), receiver: api(PAIRS + p), to: agents[PAIRS + p]!.userId })));
  await new Promise((r) => setTimeout(r, KILL_AT_MS));
  const answeredBeforeKill = load.answered.size;
  await servers[0]!.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, LOAD_MS - KILL_AT_MS));
  const lost = await load.finish(20_000);
  t.log(`${load.answered.size} sends answered (${answeredBeforeKill} before the kill), ${load.sendFailures()} failed attempts retried, ${load.received.size} received, ${lost.length} lost`);
  t.true(load.answered.size - answeredBeforeKill > 50, 'the load went on after the kill');
  t.deepEqual(lost, []);
});
