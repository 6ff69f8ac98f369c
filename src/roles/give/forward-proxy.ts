import { endToEndHeaders } from '../../net/hop-by-hop.js';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import { LanternError } from '../../core/errors.js';
import type { FaultBoundary } from '../../core/fault-boundary.js';
import { checkLiteralDestination, guardedLookup } from './destination-policy.js';

/** Passes bytes on to the client's response (waiting for it to drain), counting them. */
class CountingWritable extends Writable {
  constructor(
    private readonly res: ServerResponse,
    private readonly count: (n: number) => void,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.count(chunk.length);
    if (this.res.write(chunk)) done();
    else this.res.once('drain', () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.res.end(() => done());
  }
}


export interface ForwardProxyHooks {
  /** Whether this Proxy-Authorization value carries a valid ticket. */
  authorized(header: string | undefined): boolean;
  /** Takes a client slot (false when all are taken) / gives it back. */
  enter(): boolean;
  leave(): void;
  count(bytes: number): void;
  /** A later request on the connection without a valid ticket: the decoy answers it. */
  refuse(req: IncomingMessage, res: ServerResponse): void;
}

/**
 * Plain HTTP forward proxying (absolute-form requests) for ticket holders, through Node's HTTP
 * server, on connections whose first request was an authorized one. Upstream connections are kept
 * alive and reused; the guarded lookup applies the destination policy to the address dialled.
 */
export class ForwardProxy {
  readonly server: HttpServer;
  readonly #hooks: ForwardProxyHooks;
  readonly #upstream: Agent;
  readonly #allowPrivate: boolean;

  constructor(faults: FaultBoundary, hooks: ForwardProxyHooks, options: { allowPrivateDestinations: boolean; headersTimeoutMs: number; keepAliveTimeoutMs: number; idleTimeoutMs: number }) {
    this.#hooks = hooks;
    this.#allowPrivate = options.allowPrivateDestinations;
    this.#upstream = new Agent({ keepAliveTimeout: 30_000, connect: { lookup: guardedLookup(options.allowPrivateDestinations) as never } });
    // Later requests on the connection: nginx's deadlines (headers, idle keep-alive, no progress).
    this.server = createHttpServer({ connectionsCheckingInterval: 1000, requestTimeout: 0, headersTimeout: options.headersTimeoutMs }, (req, res) =>
      faults.run('proxy', () => this.#forward(req, res), () => res.destroy()),
    );
    this.server.keepAliveTimeout = options.keepAliveTimeoutMs;
    this.server.timeout = options.idleTimeoutMs;
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  /** The server never listens itself (connections are handed to it); this starts its deadline checks. */
  start(): void {
    this.server.emit('listening');
  }

  async stop(): Promise<void> {
    this.server.close();
    await this.#upstream.close();
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only absolute-form requests (GET http://host/path) with a ticket are proxy requests.
    if (!/^https?:\/\//i.test(req.url ?? '') || !this.#hooks.authorized(req.headers['proxy-authorization'])) return this.#hooks.refuse(req, res);
    if (!this.#hooks.enter()) {
      res.writeHead(503, { 'Content-Length': 0 });
      return void res.end();
    }
    try {
      const target = new URL(req.url!);
      checkLiteralDestination(target.hostname, this.#allowPrivate);
      const headers = endToEndHeaders(req.headers, ['host']) as Record<string, string | string[]>;
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      // stream() writes the answer straight into our response, without an intermediate Readable.
      await this.#upstream.stream(
        { origin: target.origin, path: `${target.pathname}${target.search}`, method: req.method as 'GET', headers, body: hasBody ? req : null },
        ({ statusCode, headers: upstreamHeaders }) => {
          res.writeHead(statusCode, endToEndHeaders(upstreamHeaders));
          return new CountingWritable(res, (n) => this.#hooks.count(n));
        },
      );
    } catch (err) {
      const forbidden = LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') || LanternError.is((err as { cause?: unknown }).cause, 'LA_ERR_DESTINATION_FORBIDDEN');
      if (!res.headersSent) {
        res.writeHead(forbidden ? 403 : 502, { 'Content-Length': 0 });
        res.end();
      } else res.destroy();
    } finally {
      this.#hooks.leave();
    }
  }
}
