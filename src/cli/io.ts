import type { Readable, Writable } from 'node:stream';
import { LanternError } from '../core/errors.js';
import { prettyDestination, type LoggerOptions } from '../core/logger.js';

/** The process surface a command may use; tests pass their own. */
export interface Io {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: Record<string, string | undefined>;
  /**
   * Resolves when the process is asked to stop (SIGINT/SIGTERM). A command that reads it handles
   * the stop itself (a role shuts down gracefully); for any other, Ctrl-C ends the process at once.
   */
  stopSignal: Promise<string>;
  /** The signal that asked the process to stop, if one did (Ctrl-C makes the exit code 130). */
  stoppedBy?(): string | undefined;
}

export function processIo(): Io {
  // Data dirs and homes hold secrets: whatever this process creates (LevelDB files, keys, sockets)
  // is the user's alone (files 0600, directories 0700).
  process.umask(0o077);
  let handled = false;
  let stoppedBy: string | undefined;
  const stopSignal = new Promise<string>((resolve) => {
    const stop = (signal: string, exitCode: number) => {
      stoppedBy = signal;
      // Nobody waits for it (a one-shot command): the process ends now, as without a handler.
      if (!handled) process.exit(exitCode);
      resolve(signal);
    };
    process.once('SIGINT', () => stop('SIGINT', 130));
    process.once('SIGTERM', () => stop('SIGTERM', 143));
  });
  // A reader that went away (`lantern-agent server --json | head`, a log collector that died)
  // must not end a running role: EPIPE on stdout or stderr is ignored, and the role goes on.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    get stopSignal() {
      handled = true;
      return stopSignal;
    },
    stoppedBy: () => stoppedBy,
  };
}

export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks).toString('utf8');
}

/** Password from stdin: the first line, without its line ending. */
export async function readPassword(stream: Readable): Promise<string> {
  return (await readAll(stream)).split(/\r?\n/)[0] ?? '';
}

export function writeLine(stream: Writable, text: string): void {
  stream.write(`${text}\n`);
}

export function writeJson(stream: Writable, value: unknown): void {
  stream.write(`${JSON.stringify(value)}\n`);
}

/** Is this stream a terminal (progress lines may be redrawn in place)? */
export function isTerminal(stream: Writable): boolean {
  return (stream as Writable & { isTTY?: boolean }).isTTY === true;
}

/** The logger's options for a role: level, address scrubbing, and the format (see logFormatOption). */
export function logOptions(io: Io, flags: { logLevel: string; logFormat?: string; unsafeLogging?: boolean }): LoggerOptions {
  const pretty = flags.logFormat ? flags.logFormat === 'pretty' : isTerminal(io.stderr);
  return { level: flags.logLevel, unsafeLogging: flags.unsafeLogging === true, ...(pretty ? { destination: prettyDestination((text) => io.stderr.write(text)) } : {}) };
}

/**
 * The password: the first line of stdin with `--password-stdin` (scripts), else asked for on the
 * terminal without echo. Neither (stdin is not a terminal) is LA_ERR_USAGE.
 */
export async function obtainPassword(io: Io, fromStdin: boolean | undefined, prompt = 'Password: '): Promise<string> {
  if (fromStdin) return readPassword(io.stdin);
  const input = io.stdin as Readable & { isTTY?: boolean; setRawMode?(raw: boolean): void };
  if (input.isTTY !== true || !input.setRawMode) throw new LanternError('LA_ERR_USAGE', 'pass the password on stdin with --password-stdin (or run this on a terminal to be asked for it)');
  return promptHidden(io, input as Readable & { setRawMode(raw: boolean): void }, prompt);
}

/** Reads one line from a terminal in raw mode (nothing echoed); Ctrl-C interrupts as it would. */
function promptHidden(io: Io, input: Readable & { setRawMode(raw: boolean): void }, prompt: string): Promise<string> {
  // Echo off before the prompt shows: a password typed (or pasted) the moment it appears must not echo.
  input.setRawMode(true);
  io.stderr.write(prompt);
  input.setEncoding('utf8');
  input.resume();
  return new Promise((resolve) => {
    let text = '';
    const finish = () => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      io.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          finish();
          return resolve(text);
        }
        // Ctrl-C arrives as a byte in raw mode: the process is interrupted as by the key itself.
        if (ch === '\u0003') {
          finish();
          return void process.kill(process.pid, 'SIGINT');
        }
        if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
        else if (ch >= ' ') text += ch;
      }
    };
    input.on('data', onData);
  });
}
