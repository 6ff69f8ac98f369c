import { access } from 'node:fs/promises';
import test from 'ava';
import { runCli, startRole } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// `lantern-agent demo`: the whole network in one command, as a newcomer runs it.

interface Step {
  step: number;
  title: string;
  text: string;
  [k: string]: unknown;
}

test('demo runs every step (server, give, verify, DNS, get, fetch, encrypted message) and exits 0', async (t) => {
  const run = await runCli(['demo', '--json'], { timeoutMs: 120_000 });
  t.is(run.code, 0, run.stderr);
  const steps = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as Step);
  t.deepEqual(
    steps.map((s) => s.title),
    ['server', 'accounts', 'give', 'verify', 'dns', 'get', 'fetch', 'message', 'done'],
  );
  const verify = steps.find((s) => s.title === 'verify') as Step & { verdicts: Array<{ ok: boolean; state: string }> };
  t.is(verify.verdicts.length, 2);
  t.true(verify.verdicts.every((v) => v.ok && v.state === 'verified'));
  const gives = (steps.find((s) => s.title === 'give') as Step & { gives: Array<{ port: number }> }).gives;
  t.deepEqual((steps.find((s) => s.title === 'dns')!['srvPorts'] as number[]).sort(), gives.map((g) => g.port).sort(), 'both peers are in the DNS round robin');
  t.like(steps.find((s) => s.title === 'fetch'), { status: 200 });
  t.like(steps.find((s) => s.title === 'message'), { encrypted: true });
  t.regex(String(steps.find((s) => s.title === 'message')?.['text']), /^Hi Bob/);
  const plain = await runCli(['demo'], { timeoutMs: 120_000 });
  t.is(plain.code, 0, plain.stderr);
  t.regex(plain.stdout, /\[7\] fetch +GET http:\/\/127\.0\.0\.1:\d+\/ through get/);
});

test('demo --keep-running keeps the network up until it is stopped, then stops it cleanly', async (t) => {
  const dir = await tempDir('lantern-demo-test-');
  t.teardown(() => dir.remove());
  // The demo starts a server, give, verify and get before it says so: 15 s on a quiet machine, 45 s in the full suite.
  const demo = await startRole(['demo', '--keep-running', '--dir', dir.path], (e) => e['title'] === 'running', {}, [], 90_000);
  t.teardown(() => demo.stop('SIGKILL'));
  const proxyUrl = String(demo.events.find((e) => e['title'] === 'get')?.['proxyUrl']);
  // The network is still there: the get proxy answers (a request without a target is refused, not dropped).
  const res = await fetch(proxyUrl).catch(() => undefined);
  t.truthy(res, 'the get proxy still listens');
  t.is(await demo.stop('SIGTERM'), 0);
  await t.notThrowsAsync(access(`${dir.path}/server`), 'an explicit --dir is kept');
});
