import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { access, chmod, mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { CLI, runCli, startHuman, testServer, type CliResult } from '../testing/helpers/cli.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { untilPollsHeld } from '../testing/helpers/observe.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Issue 17, item 4: every failure a user can cause says what it is (an LA_ERR_* code, a hint, the
// right exit code), with no stack trace, and leaves nothing behind.

const noStack = (r: CliResult) => !/\n\s+at /.test(r.stderr);

/**
 * Runs the CLI as a user that does not own the test's files: `nobody` through setpriv when the
 * tests run as root (root reads everything), else the test's own user, the files being chmod 000.
 */
async function runAsStranger(args: string[], stdin = ''): Promise<CliResult> {
  const root = process.getuid?.() === 0;
  if (root) await requireTool('setpriv');
  const command = root ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, ...args] : [process.execPath, CLI, ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(stdin);
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** A directory a stranger may traverse (so that what is inside is what they are refused). */
async function openDir(t: { teardown(fn: () => unknown): void }): Promise<string> {
  const dir = await tempDir('lantern-errors-');
  t.teardown(() => dir.remove());
  await chmod(dir.path, 0o755);
  return dir.path;
}

test('a taken port: get, give and server say LA_ERR_ADDRESS_IN_USE with the address, exit 2, no stack trace', async (t) => {
  const holder = createServer();
  const port = (await listen(holder, '127.0.0.1', 0)).port;
  t.teardown(() => holder.close());
  const { dir, server } = await testServer(t);
  const user = await addAgent(server, dir, 'user');
  for (const args of [
    ['get', '--listen', `127.0.0.1:${port}`, '--home', user.home],
    ['give', '--listen', `127.0.0.1:${port}`, '--home', user.home],
    ['server', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'other')],
  ]) {
    const r = await runCli(args);
    t.is(r.code, 2, `${args[0]}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`^error LA_ERR_ADDRESS_IN_USE: .*127\\.0\\.0\\.1:${port} is in use by another program`, 'm'), args[0]);
    t.true(noStack(r), r.stderr);
  }
});

test('data dirs and homes: a file, a file system that refuses, a directory of another user, a control socket of another user', async (t) => {
  const dir = await openDir(t);
  await writeFile(join(dir, 'a-file'), 'x');
  let r = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'a-file')]);
  t.is(r.code, 2);
  t.regex(r.stderr, /^error LA_ERR_NOT_A_DIRECTORY: Cannot use .*a-file: it \(or a parent\) is a file/);
  r = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'a-file', 'sub')]);
  t.regex(r.stderr, /^error LA_ERR_NOT_A_DIRECTORY/);
  // Node's recursive mkdir never returns on /proc (and the process then ignored SIGTERM).
  const started = performance.now();
  r = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', '/proc/lantern-test'], { timeoutMs: 10_000 });
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /^error LA_ERR_PATH_UNUSABLE: Cannot create \/proc\/lantern-test/);
  t.true(performance.now() - started < 8000);

  // Another user's directories: the data dir, a home inside one, a home itself.
  const { server, dir: serverDir } = await testServer(t);
  const owner = await addAgent(server, serverDir, 'owner');
  const mine = join(dir, 'mine');
  await mkdir(mine, { mode: 0o700 });
  if (process.getuid?.() !== 0) await chmod(mine, 0o000);
  t.teardown(() => chmod(mine, 0o700));
  r = await runAsStranger(['server', '--listen', '127.0.0.1:0', '--data-dir', join(mine, 'data')]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /^error LA_ERR_PERMISSION_DENIED: Cannot (use|create a directory in) .*mine/);
  r = await runAsStranger(['whoami', '--home', mine]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /^error LA_ERR_PERMISSION_DENIED/, 'not a retry-later code');
  if (process.getuid?.() === 0) {
    // The running server's control socket is its user's alone.
    await chmod(serverDir, 0o755);
    await chmod(server.dataDir, 0o755);
    r = await runAsStranger(['account', 'add', 'eve', '--data-dir', server.dataDir, '--password-stdin'], 'pw-eve-secret\n');
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /^error LA_ERR_PERMISSION_DENIED: Cannot use the control socket .*control\.sock: permission denied; run this as the user that runs the process/);
    t.true(noStack(r));
  }
  t.truthy(owner.userId);
});

test('commander parse errors use the documented form; failed commands leave no home behind', async (t) => {
  const dir = await openDir(t);
  let r = await runCli(['send', '--to', 'bob', '--bogus']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^error LA_ERR_USAGE: unknown option '--bogus'\n\(run `lantern-agent send --help` for usage\)\n$/);
  r = await runCli(['contacts', 'add']);
  t.regex(r.stderr, /^error LA_ERR_USAGE: missing required argument 'userId'/);
  r = await runCli(['nonsense']);
  t.regex(r.stderr, /^error LA_ERR_USAGE: unknown command 'nonsense'/);

  const fresh = join(dir, 'fresh-home');
  r = await runCli(['whoami', '--home', fresh]);
  t.is(r.code, 4);
  t.regex(r.stderr, /^error LA_ERR_NOT_LOGGED_IN: No agent home at .*fresh-home: run `lantern-agent login --home .*fresh-home` first/);
  await t.throwsAsync(access(fresh), undefined, 'whoami made no home');
  const { server } = await testServer(t);
  r = await runCli(['login', '--server', server.url, '--user', 'nobody-here', '--password-stdin', '--home', fresh], { stdin: 'wrong-password\n' });
  t.is(r.code, 4, r.stderr);
  await t.throwsAsync(access(fresh), undefined, 'a failed login leaves no home');
  r = await runCli(['login', '--server', server.url, '--user', 'x', '--password-stdin', '--home', fresh, '--ca', join(dir, 'no-such-ca.pem')], { stdin: 'password1\n' });
  t.regex(r.stderr, /^error LA_ERR_CONFIG: Cannot read --ca .*no-such-ca\.pem/);
});

test('Ctrl-C ends a role with exit code 130, after its graceful stop; a one-shot command at once', async (t) => {
  const { dir, server } = await testServer(t, ['--metrics-listen', '127.0.0.1:0']);
  const user = await addAgent(server, dir, 'user');
  const inbox = spawn(process.execPath, [CLI, 'inbox', '--wait', '30s', '--home', user.home], { stdio: 'ignore' });
  await untilPollsHeld(server, 1);
  inbox.kill('SIGINT');
  const [code] = (await once(inbox, 'exit')) as [number | null];
  t.is(code, 130, 'inbox, interrupted in its poll');
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', user.home], /local proxy on/);
  t.is(await get.stop('SIGINT'), 130);
  // login waiting for a password on stdin does not handle the stop: it ends at once.
  const login = spawn(process.execPath, [CLI, 'login', '--server', server.url, '--user', 'user', '--password-stdin', '--home', join(dir, 'elsewhere')], { stdio: ['pipe', 'ignore', 'ignore'] });
  await new Promise((r) => setTimeout(r, 1000));
  login.kill('SIGINT');
  const [loginCode, loginSignal] = (await once(login, 'exit')) as [number | null, string | null];
  // Exit 130, or (interrupted while Node still started up) death by SIGINT: a shell sees 130 both ways.
  t.true(loginCode === 130 || loginSignal === 'SIGINT', `login, waiting on stdin: ${loginCode} ${loginSignal}`);
  const stopped = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', user.home], /local proxy on/);
  t.is(await stopped.stop('SIGTERM'), 0, 'SIGTERM (systemd stop) is a clean stop');
});

test('logs: --log-format pretty is a line a person reads, JSON when not on a terminal (a collector)', async (t) => {
  const dir = await openDir(t);
  const pretty = await startHuman(['server', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'a'), '--log-format', 'pretty'], /INFO listening/);
  t.regex(pretty.stderr(), /^\d\d:\d\d:\d\d INFO listening url=http:\/\/\[addr\]:\d+ tls=false$/m);
  await pretty.stop();
  const json = await startHuman(['server', '--listen', '127.0.0.1:0', '--data-dir', join(dir, 'b')], /"msg":"listening"/);
  t.regex(json.stderr(), /^\{"level":30,"time":\d+,.*"msg":"listening"\}$/m, 'stderr is a pipe here: JSON');
  await json.stop();
});
