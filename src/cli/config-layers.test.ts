import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import test from 'ava';
import { main } from './main.js';

// Options in layers: defaults < config file < LANTERN_* variables < flags, shown by --print-config
// (which starts nothing).

async function run(argv: string[], env: Record<string, string> = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await main(['node', 'lantern-agent', ...argv], { stdout, stderr, stdin: new PassThrough(), env, stopSignal: new Promise(() => undefined) });
  return { code, out, err, config: () => JSON.parse(out) as Record<string, { value: unknown; source: string }> };
}

async function dir(t: { teardown(fn: () => unknown): void }) {
  const d = await mkdtemp(join(tmpdir(), 'lantern-config-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('defaults < config file < environment < flags, each option through its own parser', async (t) => {
  const d = await dir(t);
  const file = join(d, 'server.toml');
  await writeFile(file, ['listen = "127.0.0.1:0"', 'data-dir = "data"', 'retention = "7d"', 'dns-ttl = 60', 'peerjs-key = "from-file"', 'peerjs = false', 'rate-pair = "50/5"'].join('\n'));
  const r = await run(['server', '--config', file, '--print-config', '--dns-ttl', '10'], { LANTERN_PEERJS_KEY: 'from-env', LANTERN_RETENTION: '3d' });
  t.is(r.code, 0, r.err);
  const c = r.config();
  t.deepEqual(c['listen'], { value: { host: '127.0.0.1', port: 0 }, source: 'config' });
  t.deepEqual(c['data-dir'], { value: join(d, 'data'), source: 'config' }, 'a relative path is relative to the config file');
  t.deepEqual(c['retention'], { value: 3 * 86_400_000, source: 'env' }, 'the environment over the file');
  t.deepEqual(c['dns-ttl'], { value: 10_000, source: 'cli' }, 'a flag over the file; a bare number is seconds');
  t.deepEqual(c['peerjs-key'], { value: 'from-env', source: 'env' });
  t.deepEqual(c['peerjs'], { value: false, source: 'config' }, '--no-peerjs as peerjs = false');
  t.deepEqual(c['rate-pair'], { value: { capacity: 50, refillPerSecond: 5 }, source: 'config' });
  t.deepEqual(c['expire-interval'], { value: 60_000, source: 'default' });
});

test('YAML works the same; lists for options that take several values', async (t) => {
  const d = await dir(t);
  const file = join(d, 'give.yaml');
  await writeFile(file, ['listen: 127.0.0.1:0', 'advertise-to:', '  - 9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', 'handshake-timeout: 30s', 'allow-private-destinations: true'].join('\n'));
  const r = await run(['give', '--config', file, '--print-config']);
  t.is(r.code, 0, r.err);
  const c = r.config();
  t.deepEqual(c['advertise-to']?.value, ['9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b']);
  t.is(c['handshake-timeout']?.value, 30_000);
  t.is(c['allow-private-destinations']?.value, true);
  t.is(c['register']?.value, true, 'a default');
});

test('unknown keys, bad values, tables and unreadable files are LA_ERR_CONFIG naming what is wrong; a missing required option says where it may come from', async (t) => {
  const d = await dir(t);
  const cases: Array<[string, string, RegExp]> = [
    ['unknown.toml', 'listen = "127.0.0.1:0"\nlisten-address = "x"', /unknown key "listen-address"/],
    ['bad.toml', 'listen = "nowhere"', /key listen: expected HOST:PORT/],
    ['badswitch.toml', 'peerjs = "maybe"', /key peerjs: expected true or false/],
    ['table.toml', '[server]\nlisten = "127.0.0.1:0"', /no tables/],
    ['broken.toml', 'listen = ', /not valid TOML/],
  ];
  for (const [name, text, message] of cases) {
    await writeFile(join(d, name), text);
    const r = await run(['server', '--config', join(d, name), '--data-dir', d]);
    t.is(r.code, 2, name);
    t.regex(r.err, /^error LA_ERR_CONFIG: /, name);
    t.regex(r.err, message, name);
  }
  const missing = await run(['server', '--config', join(d, 'nope.toml')]);
  t.regex(missing.err, /LA_ERR_CONFIG: Cannot read the config file/);
  const env = await run(['server', '--data-dir', d], { LANTERN_DNS_TTL: 'soon' });
  t.regex(env.err, /LA_ERR_CONFIG: environment variable LANTERN_DNS_TTL: /);
  const required = await run(['server', '--data-dir', d]);
  t.is(required.code, 2);
  t.regex(required.err, /LA_ERR_USAGE: --listen is required \(as a flag, LANTERN_LISTEN, or "listen" in the config file\)/);
});

test('--print-config masks credentials (a Redis password in --store)', async (t) => {
  const d = await dir(t);
  const r = await run(['server', '--listen', '127.0.0.1:0', '--data-dir', d, '--store', 'redis://:hunter2@127.0.0.1:6379', '--print-config']);
  t.is(r.code, 0, r.err);
  t.false(r.out.includes('hunter2'));
  t.regex(JSON.stringify(r.config()['store']), /\*\*\*@127\.0\.0\.1/);
});

test('LANTERN_CONFIG names the file when --config is not given', async (t) => {
  const d = await dir(t);
  await writeFile(join(d, 'get.toml'), 'listen = "127.0.0.1:18118"\nidle-timeout = "5m"');
  const r = await run(['get', '--print-config'], { LANTERN_CONFIG: join(d, 'get.toml') });
  t.is(r.code, 0, r.err);
  t.deepEqual(r.config()['listen'], { value: { host: '127.0.0.1', port: 18118 }, source: 'config' });
  t.is(r.config()['idle-timeout']?.value, 300_000);
});
