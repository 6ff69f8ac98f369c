import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { Agent } from 'undici';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { CHALLENGE_PATTERN } from '../../crypto/peer-identity.js';
import type { TicketVerifier } from '../../crypto/tickets.js';
import { formatUrl, listen } from '../../net/listen.js';
import { CHALLENGE_HEADER, PEER_PROOF_HEADER } from '../../net/tunnel.js';
import { readExact, readGreeting, readRequest, sniffProtocol, SOCKS, SOCKS_REPLY, socksReply } from '../../net/socks5.js';
import { TICKET_USERNAME } from '../../protocol/ticket.js';
import { ByteBudget, relay } from './bandwidth.js';
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
}

export interface GiveProxyStats {
  activeTunnels: number;
  tunnelsServed: number;
  bytesRelayed: number;
  refused: number;
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
 * (told apart by the first byte), only to holders of a valid ticket. Anything else gets the decoy
 * 404 page of an ordinary web server. Destinations in private ranges are refused unless allowed.
 */
export class GiveProxy implements Startable {
  readonly #c: { tickets: TicketVerifier; clock: Clock; logger: Logger };
  readonly #o: GiveProxyOptions;
  readonly #http: HttpServer;
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

  constructor(components: { tickets: TicketVerifier; clock: Clock; logger: Logger }, options: GiveProxyOptions) {
    this.#c = components;
    this.#o = options;
    this.#budget = options.maxMbps ? new ByteBudget((options.maxMbps * 1_000_000) / 8) : undefined;
    // Upstream connections for plain HTTP forwarding are kept alive and reused; the guarded lookup
    // applies the destination policy to the address actually dialled.
    this.#upstream = new Agent({ keepAliveTimeout: 30_000, connect: { lookup: guardedLookup(options.allowPrivateDestinations) as never } });
    this.#http = createHttpServer((req, res) => void this.#forward(req, res));
    this.#http.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.#connect(req, socket, head));
    this.#http.on('clientError', (_err, socket: Socket) => this.#decoy(socket));
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
    return { activeTunnels: this.#active, tunnelsServed: this.#served, bytesRelayed: this.#bytes, refused: this.#refused, paused: this.#paused };
  }

  /** While paused, ticket holders get the decoy too (sharing is off) and open tunnels are closed. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    if (paused) for (const s of this.#sockets) s.destroy();
  }

  async start(): Promise<void> {
    const server = createServer((socket) => this.#accept(socket));
    const addr = await listen(server, this.#o.host, this.#o.port);
    this.#server = server;
    this.#url = formatUrl('http', addr.host, addr.port);
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
    await this.#upstream.close();
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setNoDelay(true);
    sniffProtocol(socket, { socks: (s) => void this.#socks(s), http: (s) => this.#http.emit('connection', s) });
  }

  #decoy(socket: Socket): void {
    this.#refused++;
    if (socket.writable) socket.end(DECOY_RESPONSE);
    else socket.destroy();
  }

  /** A ticket from `Proxy-Authorization: Basic base64("ticket:" + TICKET)`, checked offline. */
  #authorized(header: string | undefined): boolean {
    if (this.#paused || !header?.startsWith('Basic ')) return false;
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
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
    const upstream = connect({ host: host.replace(/^\[|\]$/g, ''), port, lookup: guardedLookup(this.#o.allowPrivateDestinations) });
    upstream.setNoDelay(true);
    try {
      await once(upstream, 'connect');
    } catch (err) {
      upstream.destroy();
      if (LanternError.is(err)) throw err;
      throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', (err as Error).message, { cause: err });
    }
    return upstream;
  }

  #tunnel(client: Socket, upstream: Socket, head?: Buffer): void {
    if (head?.length) upstream.write(head);
    relay(client, upstream, { onBytes: this.#count, ...(this.#budget ? { budget: this.#budget } : {}) });
    relay(upstream, client, { onBytes: this.#count, ...(this.#budget ? { budget: this.#budget } : {}) });
    let left = false;
    const done = () => {
      if (left) return;
      left = true;
      client.destroy();
      upstream.destroy();
      this.#leave();
    };
    client.once('close', done);
    upstream.once('close', done);
    upstream.on('error', done);
  }

  async #connect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    if (!this.#authorized(req.headers['proxy-authorization'])) return this.#decoy(socket);
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    if (!m) return void socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    if (!this.#enter()) return void socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    let upstream: Socket;
    try {
      upstream = await this.#dial(m[1]!, Number(m[2]));
    } catch (err) {
      this.#leave();
      const status = LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') ? '403 Forbidden' : '502 Bad Gateway';
      return void socket.end(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    }
    socket.write(`HTTP/1.1 200 Connection Established\r\n${this.#proofHeader(req.headers[CHALLENGE_HEADER])}\r\n`);
    this.#tunnel(socket, upstream, head);
  }

  #proofHeader(challenge: string | string[] | undefined): string {
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

  async #socks(socket: Socket): Promise<void> {
    try {
      const { version, methods } = await readGreeting(socket);
      if (version !== SOCKS.version || !methods.includes(SOCKS.userPass) || this.#paused) return this.#decoy(socket);
      socket.write(Buffer.from([SOCKS.version, SOCKS.userPass]));
      const [, ulen] = await readExact(socket, 2);
      const user = (await readExact(socket, ulen!)).toString('utf8');
      const [plen] = await readExact(socket, 1);
      const ticket = (await readExact(socket, plen!)).toString('utf8');
      if (user !== TICKET_USERNAME || !this.#ticketOk(ticket)) return this.#decoy(socket);
      socket.write(Buffer.from([1, 0]));
      const target = await readRequest(socket);
      if ('refuse' in target) return void socket.end(socksReply(target.refuse));
      const { host, port } = target;
      if (!this.#enter()) return void socket.end(socksReply(SOCKS_REPLY.failure));
      let upstream: Socket;
      try {
        upstream = await this.#dial(host, port);
      } catch (err) {
        this.#leave();
        return void socket.end(socksReply(LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') ? SOCKS_REPLY.notAllowed : SOCKS_REPLY.hostUnreachable));
      }
      socket.write(socksReply(SOCKS_REPLY.ok));
      this.#tunnel(socket, upstream);
    } catch {
      socket.destroy();
    }
  }
}
