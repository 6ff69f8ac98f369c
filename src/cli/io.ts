import type { Readable, Writable } from 'node:stream';

/** The process surface a command may use; tests pass their own. */
export interface Io {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: Record<string, string | undefined>;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM). */
  stopSignal: Promise<string>;
}

export function processIo(): Io {
  // Data dirs and homes hold secrets: whatever this process creates (LevelDB files, keys, sockets)
  // is the user's alone (files 0600, directories 0700).
  process.umask(0o077);
  const stopSignal = new Promise<string>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  // A reader that went away (`lantern-agent server --json | head`, a log collector that died)
  // must not end a running role: EPIPE on stdout or stderr is ignored, and the role goes on.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, stopSignal };
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
