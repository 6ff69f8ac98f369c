import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { CLI, runCli, startRole } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// The example configurations in fixtures/ are valid for their commands, and a server
// starts from one, with environment variables and flags above the file.

const fixture = (name: string) => fileURLToPath(new URL(`../../fixtures/${name}`, import.meta.url));

test('server --config fixtures/server.toml starts; LANTERN_* variables and flags override the file', async (t) => {
  const dir = await tempDir('lantern-config-e2e-');
  t.teardown(() => dir.remove());
  // The file listens on 0.0.0.0:8443 with DNS on :5353 and metrics on :9464, in /var/lib: a flag
  // and variables move all of them to loopback, port 0, and a temp dir.
  const server = await startRole(
    ['server', '--config', fixture('server.toml'), '--listen', '127.0.0.1:0'],
    'listening',
    { LANTERN_DATA_DIR: `${dir.path}/data`, LANTERN_DNS_LISTEN: '127.0.0.1:0', LANTERN_METRICS_LISTEN: '127.0.0.1:0' },
  );
  t.teardown(() => server.stop());
  const listening = server.events.find((e) => e['event'] === 'listening')!;
  t.regex(String(listening['url']), /^http:\/\/127\.0\.0\.1:\d+$/);
  // From the file: the PeerJS path, and the DNS zone.
  t.regex(String(listening['peerjs']), /\/signal\/peerjs$/);
  t.is(server.events.find((e) => e['event'] === 'dns-listening')?.['zone'], 'peers.example.org');
  t.truthy(server.events.find((e) => e['event'] === 'metrics-listening'));
});

test('the example configurations for give and get hold only options their commands know', async (t) => {
  for (const [command, file] of [
    ['give', 'give.yaml'],
    ['get', 'get.toml'],
    ['server', 'server.toml'],
  ] as const) {
    const r = await runCli([command, '--config', fixture(file), '--print-config']);
    t.is(r.code, 0, `${file}: ${r.stderr}`);
    const config = JSON.parse(r.stdout) as Record<string, { source: string }>;
    t.true(Object.values(config).filter((v) => v.source === 'config').length >= 4, `${file} sets options`);
  }
});

test('a reader of --json that goes away (EPIPE) does not end the server; SIGTERM still stops it cleanly', async (t) => {
  const dir = await tempDir('lantern-epipe-');
  t.teardown(() => dir.remove());
  const child = spawn(process.execPath, [CLI, 'server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/data`, '--json', '--no-peerjs'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = once(child, 'exit');
  const first = JSON.parse(((await once(createInterface({ input: child.stdout! }), 'line')) as [string])[0]) as { url: string };
  // The reader goes away: the next event the server writes (`stopping`) meets a closed pipe.
  child.stdout!.destroy();
  t.is((await fetch(`${first.url}/v1/health`)).status, 200);
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  t.is(code, 0, 'exited 0 after writing to a closed stdout');
});
