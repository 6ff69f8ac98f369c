import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { systemClock } from '../core/clock.js';
import { ApiClient, createDispatcher } from '../net/api-client.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer, type RunningServer } from '../testing/helpers/cli.js';
import { startNginx } from '../testing/helpers/nginx.js';
import { startRedis } from '../testing/helpers/redis.js';
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

  const answered = new Set<string>();
  const received = new Set<string>();
  let sendFailures = 0;
  let sending = true;
  let receiving = true;
  const senders = Array.from({ length: PAIRS }, async (_, p) => {
    const client = api(p);
    const to = agents[PAIRS + p]!.userId;
    while (sending) {
      const tag = `${p}:${randomUUID()}`;
      const id = randomUUID();
      // A send that fails is retried with the same id until it is answered (the server dedupes).
      for (let attempt = 0; attempt < 20; attempt++) {
        try {
          await client.send({ id, to, deviceId: 1, type: 0, payload: Buffer.from(tag).toString('base64') });
          answered.add(tag);
          break;
        } catch {
          sendFailures++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  });
  const receivers = Array.from({ length: PAIRS }, async (_, p) => {
    const client = api(PAIRS + p);
    while (receiving) {
      try {
        const batch = await client.poll(2, 100);
        if (!batch) continue;
        for (const m of batch.messages) received.add(Buffer.from(m.payload, 'base64').toString());
        await client.ack(batch.messages.map((m) => m.id));
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  await new Promise((r) => setTimeout(r, KILL_AT_MS));
  const answeredBeforeKill = answered.size;
  await servers[0]!.stop('SIGKILL');
  await new Promise((r) => setTimeout(r, LOAD_MS - KILL_AT_MS));
  sending = false;
  await Promise.all(senders);
  // Drain: everything answered must arrive.
  const deadline = Date.now() + 20_000;
  while ([...answered].some((m) => !received.has(m)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  receiving = false;
  await Promise.all(receivers);
  const lost = [...answered].filter((m) => !received.has(m));
  t.log(`${answered.size} sends answered (${answeredBeforeKill} before the kill), ${sendFailures} failed attempts retried, ${received.size} received, ${lost.length} lost`);
  t.true(answered.size - answeredBeforeKill > 50, 'the load went on after the kill');
  t.deepEqual(lost, []);
});
