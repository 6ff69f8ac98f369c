import { chmod, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { LanternError, isErrorCode } from '../core/errors.js';
import { FaultBoundary } from '../core/fault-boundary.js';
import type { Logger } from '../core/logger.js';
import { ControlAnswer } from '../protocol/messages.js';
import { finish } from './finish.js';

const MAX_REQUEST = 16 * 1024;
/** The request line must arrive, and the answer be taken, within this. */
const DEADLINE_MS = 10_000;

/**
 * A local control socket: a Unix socket (mode 0600, so only the owner's user can use it) through
 * which commands reach a running process: `account` commands a server that holds the data dir's
 * LevelDB lock, `status`/`give --pause` a running give peer. One JSON request line per connection,
 * one JSON answer line: `{ok: true, result}` or `{error: {code, message}}`.
 */
export class ControlSocketServer {
  readonly #path: string;
  readonly #handle: (request: unknown) => Promise<Record<string, unknown>>;
  readonly #logger: Logger;
  readonly #faults: FaultBoundary;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;

  constructor(components: { logger: Logger; faults?: FaultBoundary }, path: string, handle: (request: unknown) => Promise<Record<string, unknown>>) {
    this.#path = path;
    this.#handle = handle;
    this.#logger = components.logger;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
  }

  async start(): Promise<void> {
    // A socket file left by a killed process would make listen fail; the caller owns the directory.
    await rm(this.#path, { force: true });
    const server = createServer(this.#faults.wrap('control', (socket: Socket) => this.#serve(socket), (_err, socket) => socket.destroy()));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#path, () => resolve());
    });
    await chmod(this.#path, 0o600);
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
    await rm(this.#path, { force: true });
  }

  /** One request line (at most MAX_REQUEST bytes, within DEADLINE_MS), one answer line, then the end. */
  #serve(socket: Socket): void {
    let buf = '';
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.setTimeout(DEADLINE_MS, () => socket.destroy());
    // The answer, then the end: closed once it is flushed, whatever the client does next.
    const answer = (value: unknown) => finish(socket, `${JSON.stringify(value)}\n`);
    const onData = (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0 && buf.length <= MAX_REQUEST) return;
      socket.off('data', onData);
      socket.pause();
      if (nl < 0 || nl > MAX_REQUEST) return void answer(errorAnswer(new LanternError('LA_ERR_BODY_TOO_LARGE')));
      this.#faults.run('control', async () => answer(await this.#answer(buf.slice(0, nl))), () => socket.destroy());
    };
    socket.on('data', onData);
  }

  async #answer(line: string): Promise<unknown> {
    try {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        throw new LanternError('LA_ERR_MALFORMED_JSON', undefined, { cause: err });
      }
      return { ok: true, result: await this.#handle(value) };
    } catch (err) {
      const e = LanternError.is(err) ? err : new LanternError('LA_ERR_INTERNAL', undefined, { cause: err });
      if (e.code === 'LA_ERR_INTERNAL') this.#logger.error({ err }, 'control request failed');
      return errorAnswer(e);
    }
  }
}

function errorAnswer(e: LanternError) {
  return { error: { code: e.code, message: e.message } };
}

/** Sends one request to a control socket; `undefined` when no process listens there. */
export async function controlRequest(path: string, request: unknown): Promise<Record<string, unknown> | undefined> {
  const answer = await new Promise<string | undefined>((resolve, reject) => {
    const socket = createConnection(path);
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => (buf += chunk));
    socket.on('end', () => resolve(buf));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
      else if (err.code === 'EACCES' || err.code === 'EPERM') {
        reject(new LanternError('LA_ERR_PERMISSION_DENIED', `Cannot use the control socket ${path}: permission denied; run this as the user that runs the process (the socket is theirs alone, mode 0600)`, { cause: err }));
      } else reject(new LanternError('LA_ERR_SERVER_UNREACHABLE', `Cannot use the control socket ${path}: ${err.message}`, { cause: err }));
    });
  });
  if (answer === undefined) return undefined;
  let parsed;
  try {
    parsed = ControlAnswer.safeParse(JSON.parse(answer));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) throw new LanternError('LA_ERR_SERVER_RESPONSE', 'Unreadable answer on the control socket');
  if ('error' in parsed.data) {
    const { code, message } = parsed.data.error;
    throw new LanternError(isErrorCode(code) ? code : 'LA_ERR_INTERNAL', message);
  }
  return parsed.data.result;
}
