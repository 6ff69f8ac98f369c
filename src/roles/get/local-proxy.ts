import { endToEndHeaders } from '../../net/hop-by-hop.js';
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type AgentOptions, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import { formatUrl, listen } from '../../net/listen.js';
import { ProxyFrontEnd, type FailureAnswer, type TunnelRequest } from '../../net/proxy-front-end.js';
import { splice } from '../../net/relay.js';
import { failureAnswer } from './failure-answers.js';
import type { UpstreamPool } from './upstream-pool.js';

export interface LocalProxyOptions {
  host: string;
  port: number;
  /** Deadline for the first bytes and each handshake step (default 30 s). */
  handshakeTimeoutMs?: number;
  /** A tunnel with no byte either way this long is closed (default 10 min). */
  idleTimeoutMs?: number;
  /** Connections open at once (default 1024; 0: no limit). */
  maxConnections?: number;
  /** A forwarded request's tunnel kept for the next request to the same origin this long (default 2 s). */
  forwardIdleMs?: number;
}

/**
 * Idle forward tunnels: as many as a burst of requests to one origin used (each tunnel already
 * held its place at the give peer while it carried a request), but beyond the first
 * FORWARD_IDLE_KEPT only for BURST_IDLE_MS, so that a burst's extra tunnels go right after it and
 * a handful stay for the next page. With 4 kept per origin and no more, 50 clients of one origin
 * closed and reopened a tunnel for 46 requests in 50: 1,500–2,100 GETs/s through get against
 * 5,300 with them kept (npm run bench -- proxy-peers, forward column).
 */
const FORWARD_IDLE_PER_ORIGIN = 64;
const FORWARD_IDLE_KEPT = 4;
const BURST_IDLE_MS = 100;

/**
 * The plain-HTTP forward's connections to origins: each a tunnel through a give peer, kept alive
 * between requests to the same origin (HTTP/1.1 keep-alive, as a proxy keeps its upstream
 * connections), closed after `idleMs` idle (a burst's extra ones after BURST_IDLE_MS) or as soon
 * as the origin ends it. A request no tunnel could be opened for fails with the pool's error (the
 * page that explains it is the caller's).
 */
class TunnelAgent extends HttpAgent {
  readonly #open: (target: { host: string; port: number }) => Promise<Duplex>;
  readonly #idleMs: number;

  constructor(open: (target: { host: string; port: number }) => Promise<Duplex>, idleMs: number) {
    super({ keepAlive: true, timeout: idleMs, maxFreeSockets: FORWARD_IDLE_PER_ORIGIN, scheduling: 'lifo' } satisfies AgentOptions);
    this.#open = open;
    this.#idleMs = idleMs;
  }

  /** A tunnel a request is done with: kept (true) for the next one, with its idle deadline. */
  override keepSocketAlive(socket: Duplex): boolean {
    const kept: unknown = super.keepSocketAlive(socket);
    if (!kept) return false;
    let idle = 0;
    for (const list of Object.values(this.freeSockets)) idle += list?.length ?? 0;
    (socket as Socket).setTimeout(idle >= FORWARD_IDLE_KEPT ? Math.min(BURST_IDLE_MS, this.#idleMs) : this.#idleMs);
    return true;
  }

  /** A kept tunnel taken for a request: its deadline is the agent's again. */
  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    super.reuseSocket(socket, request);
    (socket as Socket).setTimeout(this.#idleMs);
  }

  override createConnection(options: { host?: string | null; port?: number | string | null }, callback: (err: Error | null, socket?: Duplex) => void): undefined {
    const target = { host: String(options.host ?? '').replace(/^\[|\]$/g, ''), port: Number(options.port) };
    this.#open(target).then(
      (tunnel) => {
        // The origin closed the connection: the tunnel is not reused (nor kept half open). Deferred,
        // so that a request on it reads its answer to the end first.
        tunnel.once('end', () => setImmediate(() => tunnel.destroy()));
        tunnel.on('error', () => tunnel.destroy());
        // An HTTP/2 stream or a data channel is not a TCP socket: what the agent asks of one
        // between requests (keep-alive probes, not holding the process open) does not apply.
        const socketLike = tunnel as Duplex & Partial<Pick<Socket, 'ref' | 'unref' | 'setKeepAlive'>>;
        socketLike.ref ??= () => tunnel as Socket;
        socketLike.unref ??= () => tunnel as Socket;
        socketLike.setKeepAlive ??= () => tunnel as Socket;
        callback(null, tunnel);
      },
      (err: unknown) => callback(err as Error),
    );
    return undefined;
  }
}

/**
 * The get-mode local proxy (HTTP CONNECT, HTTP forward and SOCKS5 on one port, no ticket needed
 * locally, through the same ProxyFrontEnd as give): every connection is carried through a give
 * peer chosen by the pool.
 */
export class LocalProxy implements Startable {
  readonly #pool: UpstreamPool;
  readonly #logger: Logger;
  readonly #faults: FaultBoundary;
  readonly #http: ReturnType<typeof createHttpServer>;
  readonly #front: ProxyFrontEnd;
  readonly #connections: ConnectionLimiter;
  readonly #idleMs: number;
  readonly #sockets = new Set<Socket>();
  readonly #agent: TunnelAgent;
  #server: Server | undefined;
  #url: string | undefined;

  constructor(components: { pool: UpstreamPool; logger: Logger; faults?: FaultBoundary }, readonly options: LocalProxyOptions) {
    this.#pool = components.pool;
    this.#logger = components.logger;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 30_000;
    this.#idleMs = options.idleTimeoutMs ?? 600_000;
    this.#connections = new ConnectionLimiter({ maxTotal: options.maxConnections ?? 1024, maxPerAddress: 0 });
    this.#http = createHttpServer({ connectionsCheckingInterval: 1000, requestTimeout: 0, headersTimeout: handshakeTimeoutMs }, (req, res) =>
      this.#faults.run('proxy', () => this.#forward(req, res), () => res.destroy()),
    );
    this.#http.timeout = this.#idleMs;
    this.#agent = new TunnelAgent((target) => this.#pool.tunnel(target), options.forwardIdleMs ?? 2000);
    this.#front = new ProxyFrontEnd({ faults: this.#faults }, { handshakeTimeoutMs }, {
      tunnel: (request) => this.#tunnel(request),
      http: (_head, _socket, handOff) => handOff(this.#http),
      refuse: (socket) => socket.destroy(),
    });
  }

  get url(): string {
    if (!this.#url) throw new Error('local proxy is not started');
    return this.#url;
  }

  async start(): Promise<void> {
    const server = createServer(
      this.#faults.wrap(
        'proxy',
        (socket: Socket) => {
          socket.on('error', () => socket.destroy());
          if (!this.#connections.admit(socket)) return;
          this.#sockets.add(socket);
          socket.once('close', () => this.#sockets.delete(socket));
          this.#front.serve(socket);
        },
        (_err, socket) => socket.destroy(),
      ),
    );
    const a = await listen(server, this.options.host, this.options.port);
    this.#server = server;
    this.#url = formatUrl('http', a.host, a.port);
    // The inner HTTP server never listens itself; this starts its header-deadline checks.
    this.#http.emit('listening');
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    this.#agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.#http.close();
  }

  /** A tunnel through a give peer; the peer's side is tied to the client socket's close from the start. */
  async #tunnel(request: TunnelRequest): Promise<void> {
    if (!request.target) return request.fail('bad-request');
    const client = request.socket;
    let upstream: Duplex | undefined;
    const early = () => upstream?.destroy();
    client.once('close', early);
    try {
      upstream = await this.#pool.tunnel(request.target);
    } catch (err) {
      const answer = failureAnswer(err, request.target);
      this.#logger.warn({ code: (err as { code?: string }).code, cause: answer.cause }, 'no give peer could open the tunnel');
      return request.fail('unreachable', answer);
    }
    if (client.destroyed) return void upstream.destroy();
    client.off('close', early);
    upstream.on('error', () => upstream?.destroy());
    const head = request.accept();
    client.setTimeout(this.#idleMs, () => {
      client.destroy();
      upstream?.destroy();
    });
    if (head.length) upstream.write(head);
    splice(client, upstream, { onBytes: () => undefined }, () => undefined);
  }

  /** Plain HTTP forward: the request goes over a tunnel to the origin, in origin form. */
  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
      if (target.protocol !== 'http:') throw new Error('not http');
    } catch {
      res.writeHead(400, { 'Content-Length': 0 });
      return void res.end();
    }
    const destination = { host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 80) };
    const out = httpRequest(
      { method: req.method, host: target.hostname, port: destination.port, path: `${target.pathname}${target.search}`, headers: endToEndHeaders(req.headers), agent: this.#agent },
      (upstream) => {
        res.writeHead(upstream.statusCode ?? 502, endToEndHeaders(upstream.headers));
        upstream.pipe(res);
      },
    );
    out.on('error', (err) => {
      if (res.headersSent) return void res.destroy();
      // No give peer could open the tunnel: say why, as a CONNECT's failure says.
      if (LanternError.is(err)) {
        const answer = failureAnswer(err, destination);
        this.#logger.warn({ code: err.code, cause: answer.cause }, 'no give peer could open the tunnel');
        return explain(req, res, answer);
      }
      this.#logger.warn({ err: String(err) }, 'forward failed');
      res.writeHead(502, { 'Content-Length': 0 });
      res.end();
    });
    // A request without a body (a GET, most of them) ends at once: no pipe to set up and take down.
    if (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined) out.end();
    else req.pipe(out);
  }
}

/** A forward request's failure, as a page a browser shows (HTML when it asks for HTML, else text). */
function explain(req: IncomingMessage, res: ServerResponse, answer: FailureAnswer): void {
  const html = /text\/html/.test(req.headers.accept ?? '');
  const escape = (t: string) => t.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const body = html
    ? `<!doctype html>\n<html><head><title>${answer.status} ${escape(answer.reason)}</title></head>\n<body><h1>${escape(answer.reason)}</h1>\n${answer.text.split('\n').map((l) => `<p>${escape(l)}</p>`).join('\n')}\n</body></html>\n`
    : `${answer.text}\n`;
  res.writeHead(answer.status, answer.reason, { 'Content-Type': `${html ? 'text/html' : 'text/plain'}; charset=utf-8`, 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
  res.end(body);
}
