import { chmod, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { ControlRequest } from '../../protocol/messages.js';
import { parseMessage } from '../../protocol/validate.js';
import type { AccountService } from './accounts.js';
import { errorBody } from './http-kit.js';

const MAX_REQUEST = 16 * 1024;

/**
 * A Unix socket in the data dir (mode 0600, so only the operator's user can use it) through which
 * `account add|revoke` reach a running server: LevelDB lets one process hold the directory.
 * One JSON request line per connection, one JSON answer line.
 */
export class ControlSocket {
  readonly #path: string;
  readonly #accounts: AccountService;
  readonly #logger: Logger;
  #server: Server | undefined;

  constructor(components: { accounts: AccountService; logger: Logger }, path: string) {
    this.#path = path;
    this.#accounts = components.accounts;
    this.#logger = components.logger;
  }

  async start(): Promise<void> {
    // A socket file left by a killed server would make listen fail; nobody serves it (we hold the lock).
    await rm(this.#path, { force: true });
    const server = createServer((socket) => this.#serve(socket));
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
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.#path, { force: true });
  }

  #serve(socket: Socket): void {
    let buf = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST) {
        socket.end(`${JSON.stringify(errorBody(new LanternError('LA_ERR_BODY_TOO_LARGE')))}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      socket.pause();
      void this.#handle(buf.slice(0, nl)).then((answer) => socket.end(`${JSON.stringify(answer)}\n`));
    });
  }

  async #handle(line: string): Promise<unknown> {
    try {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (err) {
        throw new LanternError('LA_ERR_MALFORMED_JSON', undefined, { cause: err });
      }
      const req = parseMessage(ControlRequest, value);
      const result =
        req.op === 'account.add'
          ? await this.#accounts.add(req.name, req.role, req.password)
          : await this.#accounts.revoke(req.name, req.deviceId);
      return { ok: true, result };
    } catch (err) {
      const e = LanternError.is(err) ? err : new LanternError('LA_ERR_INTERNAL', undefined, { cause: err });
      if (e.code === 'LA_ERR_INTERNAL') this.#logger.error({ err }, 'control request failed');
      return errorBody(e);
    }
  }
}
