import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startRole } from '../testing/helpers/cli.js';
import { startRedis, type RunningRedis } from '../testing/helpers/redis.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// A Redis reached over TLS (rediss://, its CA given with --store-ca) that requires a password, the
// URL passed in LANTERN_STORE so the password is not in the process list.

const ctx = {} as { redis?: RunningRedis; dir?: string; remove?: () => Promise<void> };
test.before(async () => {
  await requireTool('redis-server');
  const dir = await tempDir('lantern-redis-tls-');
  ctx.dir = dir.path;
  ctx.remove = dir.remove;
  ctx.redis = await startRedis(`${dir.path}/redis`, { tls: true, password: 'redis-secret' });
});
test.after.always(async () => {
  await ctx.redis?.stop();
  await ctx.remove?.();
});

test('server and account work on a TLS Redis with a password, from LANTERN_STORE and --store-ca', async (t) => {
  const redis = ctx.redis!;
  const dir = ctx.dir!;
  t.true(redis.url.startsWith('rediss://:redis-secret@'));
  const env = { LANTERN_STORE: redis.url };
  for (const name of ['tina', 'uma']) {
    const added = await runCli(['account', 'add', name, '--store-ca', redis.caFile!, '--password-stdin'], { stdin: `pw-${name}-secret\n`, env });
    t.is(added.code, 0, added.stderr);
  }
  const server = await startRole(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir}/data`, '--store-ca', redis.caFile!], 'listening', env);
  t.teardown(() => server.stop());
  t.false(server.child.spawnargs.join(' ').includes('redis-secret'), 'the password is not on the command line');
  const running = { ...server, dataDir: `${dir}/data` };
  const tina = await addAgent(running, dir, 'tina', { existing: true });
  const uma = await addAgent(running, dir, 'uma', { existing: true });
  const sent = await runCli(['send', '--to', uma.userId, 'over TLS to Redis', '--home', tina.home]);
  t.is(sent.code, 0, sent.stderr);
  const got = await runCli(['inbox', '--home', uma.home, '--json']);
  t.like(JSON.parse(got.stdout.trim()), { text: 'over TLS to Redis', from: { userId: tina.userId } });
});

test('a TLS Redis with an untrusted certificate, a wrong password or a CA without rediss:// is refused clearly', async (t) => {
  const redis = ctx.redis!;
  const dir = ctx.dir!;
  const start = (args: string[], env: Record<string, string>) => runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir}/bad`, ...args], { env, timeoutMs: 20_000 });
  // Each fails fast (a client that failed stops retrying), naming the cause.
  const untrusted = await start([], { LANTERN_STORE: redis.url });
  t.is(untrusted.code, 3, untrusted.stderr);
  t.regex(untrusted.stderr, /LA_ERR_STORE_UNAVAILABLE: Redis: self-signed certificate/);
  const wrongPassword = await start(['--store-ca', redis.caFile!], { LANTERN_STORE: redis.url.replace('redis-secret', 'wrong') });
  t.is(wrongPassword.code, 3, wrongPassword.stderr);
  t.regex(wrongPassword.stderr, /LA_ERR_STORE_UNAVAILABLE: Redis: WRONGPASS/);
  const account = await runCli(['account', 'add', 'nobody', '--store', redis.url, '--password-stdin'], { stdin: 'pw-nobody-secret\n', timeoutMs: 20_000 });
  t.is(account.code, 3, 'account commands fail the same way');
  const plain = await start(['--store', 'redis://127.0.0.1:1', '--store-ca', redis.caFile!], {});
  t.regex(plain.stderr, /LA_ERR_USAGE[\s\S]*rediss/);
});
