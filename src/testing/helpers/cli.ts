import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';

/** The built CLI (tests run after `npm run build`). */
export const CLI = fileURLToPath(new URL('../../../bin/lantern-agent.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (bounded by `timeoutMs`). */
export async function runCli(args: string[], options: { stdin?: string; timeoutMs?: number; env?: Record<string, string>; launcher?: string[] } = {}): Promise<CliResult> {
  const command = [...(options.launcher ?? []), process.execPath, CLI, ...args];
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(options.stdin ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/**
 * Runs a one-shot command of the built CLI inside this process: the same `main` the binary runs
 * (dist/cli/main.js, with the arguments, stdin, stdout and stderr of a run), without starting a
 * Node process. For test setup (`account add`, `login` for every agent a test needs): a CLI start
 * loads Node's and the dependencies' modules again, ~0.7 CPU-s on the 2-core CI machine, and the
 * suite made 430 of them for setup alone. What a test asserts about a command runs the binary,
 * except what needs a terminal: with `terminal`, stderr says it is one (progress lines).
 * A command that has not finished within `timeoutMs` fails the caller (it cannot be killed).
 */
export async function runCliInProcess(args: string[], options: { stdin?: string; env?: Record<string, string>; terminal?: boolean; timeoutMs?: number } = {}): Promise<CliResult> {
  const { main } = (await import(new URL('../../../dist/cli/main.js', import.meta.url).href)) as typeof import('../../cli/main.js');
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) =>
    new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        append(String(chunk));
        callback();
      },
    });
  const run = main([process.execPath, CLI, ...args], {
    stdin: Readable.from([Buffer.from(options.stdin ?? '')]),
    stdout: sink((s) => (stdout += s)),
    stderr: Object.assign(sink((s) => (stderr += s)), options.terminal ? { isTTY: true } : {}),
    env: { ...process.env, ...options.env },
    // A one-shot command is never asked to stop.
    stopSignal: new Promise<string>(() => undefined),
  });
  const limitMs = options.timeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`lantern-agent ${args.join(' ')} (in process) did not finish within ${limitMs / 1000} s; stderr so far: ${stderr}`)), limitMs);
  });
  try {
    return { code: await Promise.race([run, late]), stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

export interface RunningRole {
  url: string;
  child: ChildProcess;
  /** NDJSON events printed so far. */
  events: Array<Record<string, unknown>>;
  stderr(): string;
  /** Signals the process (SIGTERM by default) and waits for it to exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface RunningServer extends RunningRole {
  dataDir: string;
}

/** Signals the process (SIGTERM by default) and waits for it to exit; its exit code (null: killed by a signal). */
function stopper(child: ChildProcess, exited: Promise<unknown[]>): (signal?: NodeJS.Signals) => Promise<number | null> {
  return async (signal = 'SIGTERM') => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill(signal);
    const [code] = (await exited) as [number | null];
    return code;
  };
}

/**
 * Spawns a long-running CLI role with `--json` and waits for the NDJSON line `ready` names: an
 * event name (`listening` carries `url`) or a test on each line.
 */
export async function startRole(
  args: string[],
  ready: string | ((line: Record<string, unknown>) => boolean) = 'listening',
  env: Record<string, string> = {},
  /** A command that runs node, e.g. `['prlimit', '--nofile=600:600']`. */
  launcher: string[] = [],
  /** How long it may take to get ready (a demo starts a whole network first). */
  readyMs = 20_000,
): Promise<RunningRole> {
  const isReady = typeof ready === 'string' ? (e: Record<string, unknown>) => e['event'] === ready : ready;
  const command = [...launcher, process.execPath, CLI, ...args, '--json', ...(args.includes('--log-level') ? [] : ['--log-level', 'warn'])];
  const child = spawn(command[0]!, command.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const events: Array<Record<string, unknown>> = [];
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit');
  let url = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not get ready within ${readyMs / 1000} s: ${stderr}`)), readyMs);
    lines.on('line', (line) => {
      const event = JSON.parse(line) as Record<string, unknown>;
      events.push(event);
      if (event['event'] === 'listening') url = String(event['url']);
      if (isReady(event)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then(() => reject(new Error(`${args[0]} exited early: ${stderr}`)));
  });
  return {
    url,
    child,
    events,
    stderr: () => stderr,
    stop: stopper(child, exited),
  };
}

/** Spawns `lantern-agent server --listen 127.0.0.1:0 --json` and waits for its listening event. */
export async function startServer(dataDir: string, extra: string[] = []): Promise<RunningServer> {
  const role = await startRole(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...extra]);
  return { ...role, dataDir };
}

/** A server (built CLI, port 0) of one test, in a temp dir; both go at the test's end. */
export async function testServer(t: { teardown(fn: () => Promise<unknown>): void }, extra: string[] = []): Promise<{ dir: string; server: RunningServer }> {
  const { tempDir } = await import('./temp-dir.js');
  const dir = await tempDir('lantern-e2e-');
  const server = await startServer(`${dir.path}/data`, extra);
  t.teardown(async () => {
    await server.stop();
    await dir.remove();
  });
  return { dir: dir.path, server };
}

/**
 * One server (built CLI, port 0, its own temp dir) shared by the tests of a file: started before
 * them, stopped after. Read `ctx.server` and `ctx.dir` inside tests.
 */
export function sharedServer(
  test: { before(fn: () => Promise<void>): void; after: { always(fn: () => Promise<void>): void } },
  extra: string[] = [],
): { server: RunningServer; dir: string } {
  const ctx = {} as { server: RunningServer; dir: string; remove?: () => Promise<void> };
  test.before(async () => {
    const { tempDir } = await import('./temp-dir.js');
    const dir = await tempDir('lantern-e2e-');
    ctx.dir = dir.path;
    ctx.remove = dir.remove;
    ctx.server = await startServer(`${dir.path}/data`, extra);
  });
  test.after.always(async () => {
    await ctx.server?.stop();
    await ctx.remove?.();
  });
  return ctx;
}

/** A long-running CLI role in human mode (no --json): its stdout and stderr as they come. */
export interface HumanRole {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Signals the process (SIGTERM by default) and waits for it to exit; returns the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Spawns a role without --json and waits until its stdout or stderr matches `ready`. */
export async function startHuman(args: string[], ready: RegExp, env: Record<string, string> = {}): Promise<HumanRole> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not get ready within 20 s: ${stderr}`)), 20_000);
    const check = () => {
      if (!ready.test(stdout) && !ready.test(stderr)) return;
      clearTimeout(timer);
      resolve();
    };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => ((stdout += d), check()));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => ((stderr += d), check()));
    void exited.then(() => reject(new Error(`${args[0]} exited early: ${stderr}`)));
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    stop: stopper(child, exited),
  };
}
