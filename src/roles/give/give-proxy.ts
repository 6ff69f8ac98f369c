import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { CHALLENGE_PATTERN } from '../../crypto/peer-identity.js';
import type { TicketVerifier } from '../../crypto/tickets.js';
import { finish } from '../../net/finish.js';
import { formatUrl, listen } from '../../net/listen.js';
import { CHALLENGE_HEADER, PEER_PROOF_HEADER } from '../../net/tunnel.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import { headerValue } from '../../net/http-head.js';
import { ProxyFrontEnd, type RefusalReason, type TunnelRequest } from '../../net/proxy-front-end.js';
import { TICKET_USERNAME } from '../../protocol/ticket.js';
import { ByteBudget, relay } from '../../net/relay.js';
import { checkLiteralDestination, guardedLookup } from './destination-policy.js';

export interface GiveProxyOptions {
  host: string;
  port: number;
  allowPrivateDestinations: boolean;
  /** Tunnels and forwarded requests served at once. */
  maxClients: number;
  /** Shared cap on relayed bytes, in megabits per second. */
  maxMbps?: number;
  /**
   * Answers a verifier's challenge (sent with a CONNECT by a ticket holder) with a proof that this
   * proxy is the registered peer; undefined while not registered.
   */
  proveIdentity?: (challenge: string) => string | undefined;
  /** Deadlines and caps; see `defaultGiveLimits`. */
  limits?: Partial<GiveProxyLimits>;
}

/** What one client can hold of a give peer, and for how long. */
export interface GiveProxyLimits {
  /** The first bytes, and then each handshake step (request head, SOCKS5 message), within this (nginx: 60 s). */
  handshakeTimeoutMs: number;
  /** A kept-alive forward-proxy connection idle between requests is closed after this (nginx: 75 s). */
  keepAliveTimeoutMs: number;
  /** A tunnel, or a forwarded request, with no byte either way this long is closed. */
  idleTimeoutMs: number;
  /** Connections open at once (0: no limit). */
  maxConnections: number;
  /** Connections open at once from one address (an IPv6 /64 counts as one; 0: no limit). */
  maxConnectionsPerAddress: number;
}

export const defaultGiveLimits: GiveProxyLimits = {
  handshakeTimeoutMs: 60_000,
  keepAliveTimeoutMs: 75_000,
  idleTimeoutMs: 600_000,
  maxConnections: 1024,
  maxConnectionsPerAddress: 64,
};

export interface GiveProxyStats {
  activeTunnels: number;
  tunnelsServed: number;
  bytesRelayed: number;
  refused: number;
  /** Connections closed at once because a connection cap was reached. */
  overCapacity: number;
  /** Faults contained (a connection dropped, the process went on). */
  faults: number;
  paused: boolean;
}

/** Passes bytes on to the client's response, counting them. */
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

/** What a web server that is not a proxy answers (nginx's own 404 page). */
const DECOY_BODY =
  '<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
const DECOY_RESPONSE =
  `HTTP/1.1 404 Not Found\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: ${Buffer.byteLength(DECOY_BODY)}\r\nConnection: close\r\n\r\n` +
  DECOY_BODY;

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);


/**
 * The give-mode proxy: one port that serves HTTP CONNECT, plain HTTP forward proxying and SOCKS5
 * (the shared ProxyFrontEnd), only to holders of a valid ticket. Anything else gets the decoy 404
 * page of an ordinary web server; a connection that sends nothing is closed like nginx closes it.
 * Destinations in private or special-purpose ranges are refused unless allowed. Every connection
 * is capped (per address and in total), has deadlines, and runs inside a fault boundary.
 */
export class GiveProxy implements Startable {
  readonly #c: { tickets: TicketVerifier; clock: Clock; logger: Logger; faults: FaultBoundary };
  readonly #o: GiveProxyOptions;
  readonly #limits: GiveProxyLimits;
  readonly #http: HttpServer;
  readonly #front: ProxyFrontEnd;
  readonly #connections: ConnectionLimiter;
  readonly #upstream: Agent;
  readonly #budget: ByteBudget | undefined;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #url: string | undefined;
  #active = 0;
  #served = 0;
  #bytes = 0;
  #refused = 0;
  #paused = false;

  constructor(components: { tickets: TicketVerifier; clock: Clock; logger: Logger; faults?: FaultBoundary }, options: GiveProxyOptions) {
    this.#c = { ...components, faults: components.faults ?? new FaultBoundary({ logger: components.logger }) };
    this.#o = options;
    this.#limits = { ...defaultGiveLimits, ...options.limits };
    this.#budget = options.maxMbps ? new ByteBudget((options.maxMbps * 1_000_000) / 8) : undefined;
    this.#connections = new ConnectionLimiter({ maxTotal: this.#limits.maxConnections, maxPerAddress: this.#limits.maxConnectionsPerAddress });
    // Upstream connections for plain HTTP forwarding are kept alive and reused; the guarded lookup
    // applies the destination policy to the address actually dialled.
    this.#upstream = new Agent({ keepAliveTimeout: 30_000, connect: { lookup: guardedLookup(options.allowPrivateDestinations) as never } });
    // Forward-proxy connections (after a first authorized request) are served by Node's HTTP
    // server, with nginx's deadlines: headers of a later request, idle keep-alive, no progress.
    this.#http = createHttpServer({ connectionsCheckingInterval: 1000, requestTimeout: 0, headersTimeout: this.#limits.handshakeTimeoutMs }, (req, res) =>
      this.#c.faults.run('proxy', () => this.#forward(req, res), () => res.destroy()),
    );
    this.#http.keepAliveTimeout = this.#limits.keepAliveTimeoutMs;
    this.#http.timeout = this.#limits.idleTimeoutMs;
    this.#http.on('clientError', (_err, socket: Socket) => this.#decoy(socket));
    this.#front = new ProxyFrontEnd({ faults: this.#c.faults }, { handshakeTimeoutMs: this.#limits.handshakeTimeoutMs }, {
      socksCredentials: (user, password) => !this.#paused && user.toString('latin1') === TICKET_USERNAME && this.#ticketOk(password.toString('latin1')),
      tunnel: (request) => this.#tunnelRequest(request),
      http: (head, socket, handOff) => {
        // Only absolute-form requests (GET http://host/path) with a ticket are proxy requests.
        if (!/^https?:\/\//i.test(head.target) || !this.#authorized(headerValue(head, 'proxy-authorization'))) return this.#decoy(socket);
        handOff(this.#http);
      },
      refuse: (socket, reason) => this.#refuse(socket, reason),
    });
  }

  get url(): string {
    if (!this.#url) throw new Error('proxy is not started');
    return this.#url;
  }

  get address(): { host: string; port: number } {
    const u = new URL(this.url);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port) };
  }

  stats(): GiveProxyStats {
    return {
      activeTunnels: this.#active,
      tunnelsServed: this.#served,
      bytesRelayed: this.#bytes,
      refused: this.#refused,
      overCapacity: this.#connections.refused,
      faults: this.#c.faults.total,
      paused: this.#paused,
    };
  }

  /** While paused, ticket holders get the decoy too (sharing is off) and open tunnels are closed. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    if (paused) for (const s of this.#sockets) s.destroy();
  }

  async start(): Promise<void> {
    const server = createServer(this.#c.faults.wrap('proxy', (socket: Socket) => this.#accept(socket), (_err, socket) => socket.destroy()));
    const addr = await listen(server, this.#o.host, this.#o.port);
    this.#server = server;
    this.#url = formatUrl('http', addr.host, addr.port);
    // The inner HTTP server never listens itself; this starts its header-deadline checks.
    this.#http.emit('listening');
  }

  /** Stops accepting, lets open tunnels drain for up to `drainMs`, then closes them. Idempotent. */
  async stop(drainMs = 2000): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    const deadline = Date.now() + drainMs;
    while (this.#active > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const s of this.#sockets) s.destroy();
    await closed;
    this.#http.close();
    await this.#upstream.close();
  }

  #accept(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    if (!this.#connections.admit(socket)) return;
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.setNoDelay(true);
    this.#front.serve(socket);
  }

  /** A connection that made no request: nothing sent in time is closed silently (as nginx does), the rest get the decoy. */
  #refuse(socket: Socket, reason: RefusalReason): void {
    if (reason !== 'timeout') return this.#decoy(socket);
    this.#refused++;
    finish(socket);
  }

  #decoy(socket: Socket): void {
    this.#refused++;
    finish(socket, DECOY_RESPONSE);
  }

  /** A ticket from `Proxy-Authorization: Basic base64("ticket:" + TICKET)`, checked offline. */
  #authorized(header: string | undefined): boolean {
    if (this.#paused || !header?.startsWith('Basic ')) return false;
    const decoded = Buffer.from(header.slice(6), 'base64').toString('latin1');
    const colon = decoded.indexOf(':');
    return colon > 0 && decoded.slice(0, colon) === TICKET_USERNAME && this.#ticketOk(decoded.slice(colon + 1));
  }

  #ticketOk(ticket: string): boolean {
    try {
      this.#c.tickets.verify(ticket, this.#c.clock.now());
      return true;
    } catch {
      return false;
    }
  }

  #enter(): boolean {
    if (this.#active >= this.#o.maxClients) return false;
    this.#active++;
    this.#served++;
    return true;
  }

  #leave(): void {
    this.#active--;
  }

  #count = (n: number): void => {
    this.#bytes += n;
  };

  /** Dials a destination with the policy applied; LA_ERR_DESTINATION_* on failure. */
  async #dial(host: string, port: number): Promise<Socket> {
    checkLiteralDestination(host, this.#o.allowPrivateDestinations);
    // The connect deadline is the socket's own timeout (no timer left behind), cleared once connected.
    const upstream = connect({ host: host.replace(/^\[|\]$/g, ''), port, lookup: guardedLookup(this.#o.allowPrivateDestinations), timeout: this.#limits.handshakeTimeoutMs });
    upstream.on('error', () => upstream.destroy());
    upstream.once('timeout', () => upstream.destroy(new Error('connect timed out')));
    upstream.setNoDelay(true);
    try {
      await once(upstream, 'connect');
      upstream.setTimeout(0);
    } catch (err) {
      upstream.destroy();
      if (LanternError.is(err)) throw err;
      throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', (err as Error).message, { cause: err });
    }
    return upstream;
  }

  /**
   * A tunnel request from a ticket holder. Once it takes a slot, the slot (and the destination
   * socket) is tied to the client socket's close, so that however the request ends, a fault
   * included (the boundary closes the client socket), nothing is left behind.
   */
  async #tunnelRequest(request: TunnelRequest): Promise<void> {
    const { socket: client, target } = request;
    if (request.head && !this.#authorized(headerValue(request.head, 'proxy-authorization'))) return this.#decoy(client);
    if (!target) return request.fail('bad-request');
    if (!this.#enter()) return request.fail('busy');
    let upstream: Socket | undefined;
    let left = false;
    const done = () => {
      if (left) return;
      left = true;
      client.destroy();
      upstream?.destroy();
      this.#leave();
    };
    client.once('close', done);
    if (client.destroyed) return done();
    try {
      upstream = await this.#dial(target.host, target.port);
    } catch (err) {
      if (left) return;
      // The slot is given back now; the client socket closes once the refusal is sent.
      left = true;
      this.#leave();
      return request.fail(LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') ? 'forbidden' : 'unreachable');
    }
    upstream.once('close', done);
    if (left) return done();
    const proof = request.head ? this.#proofHeader(headerValue(request.head, CHALLENGE_HEADER)) : '';
    const head = request.accept(proof);
    client.setTimeout(this.#limits.idleTimeoutMs, done);
    if (head.length) upstream.write(head);
    relay(client, upstream, { onBytes: this.#count, ...(this.#budget ? { budget: this.#budget } : {}) });
    relay(upstream, client, { onBytes: this.#count, ...(this.#budget ? { budget: this.#budget } : {}) });
  }

  #proofHeader(challenge: string | undefined): string {
    if (typeof challenge !== 'string' || !CHALLENGE_PATTERN.test(challenge)) return '';
    const proof = this.#o.proveIdentity?.(challenge);
    return proof ? `${PEER_PROOF_HEADER}: ${proof}\r\n` : '';
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Only absolute-form requests (GET http://host/path) are proxy requests.
    if (!/^https?:\/\//i.test(req.url ?? '') || !this.#authorized(req.headers['proxy-authorization'])) {
      this.#refused++;
      res.writeHead(404, { Server: 'nginx', 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(DECOY_BODY) });
      return void res.end(DECOY_BODY);
    }
    if (!this.#enter()) {
      res.writeHead(503, { 'Content-Length': 0 });
      return void res.end();
    }
    try {
      const target = new URL(req.url!);
      checkLiteralDestination(target.hostname, this.#o.allowPrivateDestinations);
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
      const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
      // stream() writes the answer straight into our response, without an intermediate Readable.
      await this.#upstream.stream(
        { origin: target.origin, path: `${target.pathname}${target.search}`, method: req.method as 'GET', headers, body: hasBody ? req : null },
        ({ statusCode, headers: upstreamHeaders }) => {
          const out: Record<string, string | string[]> = {};
          for (const [k, v] of Object.entries(upstreamHeaders)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
          res.writeHead(statusCode, out);
          return new CountingWritable(res, this.#count);
        },
      );
    } catch (err) {
      const forbidden = LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') || LanternError.is((err as { cause?: unknown }).cause, 'LA_ERR_DESTINATION_FORBIDDEN');
      if (!res.headersSent) {
        res.writeHead(forbidden ? 403 : 502, { 'Content-Length': 0 });
        res.end();
      } else res.destroy();
    } finally {
      this.#leave();
    }
  }
}
