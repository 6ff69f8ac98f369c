import { once } from 'node:events';
import { constants as h2, createServer as createH2Server, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import type { TicketVerifier } from '../../crypto/tickets.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import { finish } from '../../net/finish.js';
import { HandshakeReader, type ParseStep } from '../../net/handshake-reader.js';
import { connectTarget, headerValue, httpHead, MAX_HEAD_BYTES, type HttpHead } from '../../net/http-head.js';
import { formatUrl, listen } from '../../net/listen.js';
import { connectRefusal, ProxyFrontEnd, socksAnswers, TUNNEL_FAILURE_STATUS, type TunnelFailure } from '../../net/proxy-front-end.js';
import { ByteBudget, splice } from '../../net/relay.js';
import { connectReusingReads } from '../../net/reused-reads.js';
import { SOCKS, socksGreeting, socksReply, socksRequest, socksUserPass } from '../../net/socks5.js';
import { TICKET_USERNAME } from '../../protocol/ticket.js';
import { checkLiteralDestination, guardedLookup } from './destination-policy.js';
import { ForwardProxy } from './forward-proxy.js';
import { NginxDecoy } from './nginx-decoy.js';

export interface GiveProxyOptions {
  host: string;
  port: number;
  allowPrivateDestinations: boolean;
  /** Tunnels and forwarded requests served at once. */
  maxClients: number;
  /** Shared cap on relayed bytes, in megabits per second. */
  maxMbps?: number;
  /**
   * The TLS certificate and key (the peer identity's): the port then speaks TLS 1.3 with ALPN h2 and
   * http/1.1. Without it the port is plaintext (`give --plaintext`, local tests only).
   */
  tls?: { certificatePem: string; privateKeyPem: string };
  /** Deadlines and caps; see `defaultGiveLimits`. */
  limits?: Partial<GiveProxyLimits>;
}

/** What one client can hold of a give peer, and for how long. */
export interface GiveProxyLimits {
  /** The TLS handshake and the first request head within this (nginx's client_header_timeout, 60 s). */
  handshakeTimeoutMs: number;
  /** A kept-alive connection idle between requests is closed after this (nginx's keepalive_timeout, 75 s). */
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

/** nginx's http2 settings (1.22): what an h2 client sees of the server. */
const H2_SETTINGS = { maxConcurrentStreams: 128, initialWindowSize: 65_536, maxFrameSize: 16_777_215 };
/** nginx's http2_idle_timeout: an h2 connection without streams is closed after this. */
const H2_IDLE_MS = 180_000;
/**
 * The connection's receive window, raised at once to the largest there is, as nginx does (its
 * WINDOW_UPDATE follows its SETTINGS). What a client may send unread is still bounded by the
 * streams' windows times their number (below).
 */
const H2_CONNECTION_WINDOW = 2 ** 31 - 1;
/**
 * The streams' receive window once a session has shown a valid ticket (a SETTINGS frame after its
 * first tunnel is accepted; open streams grow with it, RFC 9113 §6.9.2). nginx's 64 KiB
 * held an upload to one window per round trip: half the download rate on loopback. Inside TLS
 * only a ticket holder sees the change. What clients may send unread is the window times the
 * streams that hold a tunnel slot (`--max-clients`, 64 by default: 64 MiB at most): a stream
 * refused for want of a slot, and one the decoy answers, is closed once answered (RST_STREAM
 * NO_ERROR after the response), whatever of its body is still coming.
 */
const H2_TUNNEL_WINDOW = 1024 * 1024;
/** Sessions whose stream windows were raised (one SETTINGS each). */
const widened = new WeakSet<Http2Session>();
/**
 * nginx's ssl_ciphers default (HIGH:!aNULL:!MD5) for TLS 1.2, in OpenSSL's order, and the
 * server's preference (Debian: ssl_prefer_server_ciphers on; Node's default too): a prober who
 * offers suites in some order sees the same choice as from nginx. TLS 1.3 keeps OpenSSL's suites.
 */
const TLS_CIPHERS = 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:HIGH:!aNULL:!MD5';

/** Everything received so far, used by nothing: the first chunk decides what a connection is. */
const firstChunk: ParseStep<Buffer> = (b) => (b.length ? { value: b, used: 0 } : undefined);


/**
 * The give-mode proxy. One port, by default TLS (the peer identity's certificate, ALPN h2 and
 * http/1.1), serving ticket holders: HTTP/2 CONNECT streams, HTTP/1.1 CONNECT and forward proxying,
 * and SOCKS5 inside TLS. To everyone else it is nginx (NginxDecoy), down to the byte and the
 * timeout. A connection's first chunk decides: a complete proxy request with a valid ticket is
 * served; anything else, however it goes on, is the decoy's from the first byte. (nginx answers a
 * bare CONNECT line or a SOCKS greeting at once; so does this, unless the ticket came with it.)
 * Destinations in special-purpose ranges are refused unless allowed. Every connection is capped
 * (per address and in total), has deadlines, and runs inside a fault boundary.
 */
export class GiveProxy implements Startable {
  readonly #c: { tickets: TicketVerifier; clock: Clock; logger: Logger; faults: FaultBoundary };
  readonly #o: GiveProxyOptions;
  readonly #limits: GiveProxyLimits;
  readonly #decoy: NginxDecoy;
  readonly #forward: ForwardProxy;
  /** The plaintext port's front end (`--plaintext`: SOCKS5 and CONNECT step by step, as before). */
  readonly #front: ProxyFrontEnd;
  readonly #tls: TlsServer | undefined;
  readonly #h2: Http2Server;
  readonly #connections: ConnectionLimiter;
  readonly #budget: ByteBudget | undefined;
  readonly #sockets = new Set<Duplex>();
  /** When each raw connection was accepted (the header deadline runs from there). */
  readonly #acceptedAt = new WeakMap<object, number>();
  #server: Server | undefined;
  #url: string | undefined;
  #active = 0;
  #served = 0;
  #bytes = 0;
  #refused = 0;
  #paused = false;

  constructor(components: { tickets: TicketVerifier; clock: Clock; logger: Logger; faults?: FaultBoundary }, options: GiveProxyOptions) {
    const faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#c = { ...components, faults };
    this.#o = options;
    this.#limits = { ...defaultGiveLimits, ...options.limits };
    this.#decoy = new NginxDecoy({ headerMs: this.#limits.handshakeTimeoutMs, keepaliveMs: this.#limits.keepAliveTimeoutMs });
    this.#budget = options.maxMbps ? new ByteBudget((options.maxMbps * 1_000_000) / 8) : undefined;
    this.#connections = new ConnectionLimiter({ maxTotal: this.#limits.maxConnections, maxPerAddress: this.#limits.maxConnectionsPerAddress });
    this.#forward = new ForwardProxy(
      faults,
      {
        authorized: (header) => this.#authorized(header),
        enter: () => this.#enter(),
        leave: () => this.#leave(),
        count: this.#count,
        refuse: (_req: IncomingMessage, res: ServerResponse) => this.#refuseForward(res),
      },
      { allowPrivateDestinations: options.allowPrivateDestinations, headersTimeoutMs: this.#limits.handshakeTimeoutMs, keepAliveTimeoutMs: this.#limits.keepAliveTimeoutMs, idleTimeoutMs: this.#limits.idleTimeoutMs },
    );
    this.#front = new ProxyFrontEnd({ faults }, { handshakeTimeoutMs: this.#limits.handshakeTimeoutMs }, {
      socksCredentials: (user, password) => !this.#paused && user.toString('latin1') === TICKET_USERNAME && this.#ticketOk(password.toString('latin1')),
      tunnel: (request) => {
        if (request.head && !this.#authorized(headerValue(request.head, 'proxy-authorization'))) return this.#toDecoy(request.socket, request.giveUp());
        if (!request.target) return request.fail('bad-request');
        return this.#tunnel(request.socket, request.target, { accept: () => request.accept(), fail: (why) => request.fail(why) });
      },
      http: (head, socket, handOff, giveUp) => {
        // Only absolute-form requests (GET http://host/path) with a ticket are proxy requests.
        if (/^https?:\/\//i.test(head.target) && this.#authorized(headerValue(head, 'proxy-authorization'))) return handOff(this.#forward.server);
        this.#toDecoy(socket, giveUp());
      },
      refuse: (socket, reason, buffered) => {
        if (reason !== 'timeout') return this.#toDecoy(socket, buffered);
        this.#refused++;
        finish(socket);
      },
    });
    this.#h2 = createH2Server({ settings: H2_SETTINGS });
    this.#h2.on('session', (session) => {
      session.on('error', () => session.destroy());
      asNginxEndsSessions(session);
      session.setLocalWindowSize(H2_CONNECTION_WINDOW);
      // Idle (no open stream) for nginx's http2_idle_timeout: closed, as nginx closes it.
      session.setTimeout(H2_IDLE_MS, () => {
        if (openStreams(session) === 0) session.close();
      });
    });
    this.#h2.on('stream', faults.wrap('proxy', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#stream(stream, headers), (_err, stream) => stream.destroy()));
    if (options.tls) {
      this.#tls = createTlsServer({
        cert: options.tls.certificatePem,
        key: options.tls.privateKeyPem,
        ALPNProtocols: ['h2', 'http/1.1'],
        ciphers: TLS_CIPHERS,
        honorCipherOrder: true,
        handshakeTimeout: this.#limits.handshakeTimeoutMs,
      });
      this.#tls.on('secureConnection', faults.wrap('proxy', (socket: TLSSocket) => this.#secure(socket), (_err, socket) => socket.destroy()));
      this.#tls.on('tlsClientError', (_err, socket: TLSSocket) => socket.destroy());
    }
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
    this.#url = formatUrl(this.#tls ? 'https' : 'http', addr.host, addr.port);
    this.#forward.start();
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
    this.#h2.close();
    await this.#forward.stop();
  }

  #accept(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    if (!this.#connections.admit(socket)) return;
    this.#acceptedAt.set(socket, Date.now());
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.setNoDelay(true);
    if (!this.#tls) return this.#front.serve(socket);
    // The TLS port: a TLS record (or an SSLv2 hello) goes to TLS; anything else is plain bytes on
    // an HTTPS port, which nginx answers with its own page.
    const reader = new HandshakeReader(socket, { maxBytes: MAX_HEAD_BYTES });
    this.#c.faults.run(
      'proxy',
      async () => {
        let first: Buffer;
        try {
          first = await reader.read(firstChunk, this.#limits.handshakeTimeoutMs);
        } catch {
          this.#refused++;
          return finish(socket);
        }
        const rest = reader.release();
        if (first[0] === 0x16 || (first[0]! & 0x80) !== 0) {
          socket.unshift(rest);
          this.#tls!.emit('connection', socket);
          return;
        }
        this.#refused++;
        this.#decoy.serve(socket, rest, { plainOnTlsPort: true, startedAt: this.#acceptedAt.get(socket) ?? Date.now() });
      },
      () => socket.destroy(),
    );
  }

  #secure(socket: TLSSocket): void {
    const startedAt = this.#acceptedAt.get((socket as unknown as { _parent?: object })._parent ?? socket) ?? Date.now();
    socket.on('error', () => socket.destroy());
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (socket.alpnProtocol === 'h2') {
      this.#h2.emit('connection', socket);
      return;
    }
    this.#cleartext(socket, startedAt);
  }

  /**
   * A connection carrying HTTP/1.x or SOCKS5 (inside TLS, or on a plaintext port). Its first chunk
   * decides: a complete proxy request with a valid ticket is served, anything else is the decoy's.
   */
  #cleartext(socket: Socket, startedAt: number): void {
    const reader = new HandshakeReader(socket, { maxBytes: MAX_HEAD_BYTES });
    const decoy = () => {
      this.#refused++;
      this.#decoy.serve(socket, reader.release(), { plainOnTlsPort: false, startedAt });
    };
    this.#c.faults.run(
      'proxy',
      async () => {
        let first: Buffer;
        try {
          first = await reader.read(firstChunk, Math.max(1, this.#limits.handshakeTimeoutMs - (Date.now() - startedAt)));
        } catch {
          this.#refused++;
          return finish(socket);
        }
        if (first[0] === SOCKS.version) return this.#socks5(socket, reader, first, decoy);
        return this.#http1(socket, reader, first, decoy);
      },
      () => socket.destroy(),
    );
  }

  /** SOCKS5 inside TLS (or on a plaintext port): the greeting must come with the ticket as password. */
  async #socks5(socket: Socket, reader: HandshakeReader, first: Buffer, decoy: () => void): Promise<void> {
    const greeting = socksGreeting(first);
    const auth = greeting && socksUserPass(first.subarray(greeting.used));
    if (!greeting || !auth || !greeting.value.methods.includes(SOCKS.userPass)) return decoy();
    const { user, password } = auth.value;
    if (this.#paused || user.toString('latin1') !== TICKET_USERNAME || !this.#ticketOk(password.toString('latin1'))) return decoy();
    await reader.read(() => ({ value: null, used: greeting.used + auth.used }), 1);
    socket.write(Buffer.from([SOCKS.version, SOCKS.userPass, 1, 0]));
    let request;
    try {
      request = await reader.read(socksRequest, this.#limits.handshakeTimeoutMs);
    } catch {
      return finish(socket);
    }
    if ('refuse' in request) {
      reader.release();
      return finish(socket, socksReply(request.refuse));
    }
    return this.#tunnel(socket, request, socksAnswers(socket, reader));
  }

  /** HTTP/1.x with a ticket: CONNECT becomes a tunnel, an absolute-form request goes to the forward proxy. */
  async #http1(socket: Socket, reader: HandshakeReader, first: Buffer, decoy: () => void): Promise<void> {
    let head: HttpHead | undefined;
    try {
      head = httpHead(first)?.value;
    } catch {
      head = undefined;
    }
    if (!head || !this.#authorized(headerValue(head, 'proxy-authorization'))) return decoy();
    if (head.method === 'CONNECT') {
      await reader.read(httpHead, 1);
      const target = connectTarget(head.target);
      if (!target) {
        reader.release();
        return finish(socket, connectRefusal(400));
      }
      return this.#tunnel(socket, target, {
        accept: () => {
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          return reader.release();
        },
        fail: (why) => {
          reader.release();
          finish(socket, connectRefusal(TUNNEL_FAILURE_STATUS[why]));
        },
      });
    }
    if (!/^https?:\/\//i.test(head.target)) return decoy();
    // Forward proxying: the connection goes to the HTTP server, this request included.
    socket.unshift(reader.release());
    this.#forward.server.emit('connection', socket);
    socket.resume();
  }

  /** An HTTP/2 stream: CONNECT with a valid ticket is a tunnel; anything else gets nginx's answer. */
  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on('error', () => stream.destroy());
    const session = stream.session;
    if (session) {
      openStreamCount.set(session, openStreams(session) + 1);
      stream.once('close', () => openStreamCount.set(session, openStreams(session) - 1));
    }
    const auth = headers['proxy-authorization'];
    if (headers[h2.HTTP2_HEADER_METHOD] !== 'CONNECT' || !this.#authorized(typeof auth === 'string' ? auth : undefined)) {
      this.#refused++;
      return this.#decoy.answerStream(stream, headers);
    }
    const target = connectTarget(String(headers[h2.HTTP2_HEADER_AUTHORITY] ?? ''));
    const fail = (status: number) => {
      if (!stream.headersSent && !stream.destroyed) stream.respond({ [h2.HTTP2_HEADER_STATUS]: status }, { endStream: true });
    };
    if (!target) return fail(400);
    void this.#tunnel(stream, target, {
      accept: () => {
        stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200 });
        if (session && !session.destroyed && !widened.has(session)) {
          widened.add(session);
          session.settings({ initialWindowSize: H2_TUNNEL_WINDOW });
        }
        return Buffer.alloc(0);
      },
      fail: (why) => fail(TUNNEL_FAILURE_STATUS[why]),
    });
  }

  /**
   * A tunnel asked for over another transport (a WebRTC data channel, for a give peer behind NAT):
   * the same ticket check, client slot, destination guard, idle timeout, bandwidth cap and byte count
   * as a CONNECT on the port. `fail('ticket')`: no valid ticket for this peer (or sharing is paused).
   */
  serveTunnel(client: Duplex, request: { ticket: string; host: string; port: number }, answer: { accept(): void; fail(why: TunnelFailure | 'ticket'): void }): void {
    if (this.#paused || !this.#ticketOk(request.ticket)) {
      this.#refused++;
      return answer.fail('ticket');
    }
    void this.#tunnel(client, { host: request.host, port: request.port }, {
      accept: () => {
        answer.accept();
        return Buffer.alloc(0);
      },
      fail: (why) => answer.fail(why),
    });
  }

  /** A connection that is not a ticket holder's, on a plaintext port: nginx's from here on. */
  #toDecoy(socket: Socket, bytes: Buffer): void {
    this.#refused++;
    this.#decoy.serve(socket, bytes, { plainOnTlsPort: false, startedAt: this.#acceptedAt.get(socket) ?? Date.now() });
  }

  /** A later request without a ticket on a forward-proxy connection: nginx's 404, and the end. */
  #refuseForward(res: ServerResponse): void {
    this.#refused++;
    const body = '<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
    res.writeHead(404, { Server: 'nginx', 'Content-Type': 'text/html', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
    res.end(body);
  }

  /** A ticket from `Proxy-Authorization: Basic base64("ticket:" + TICKET)`, checked offline. */
  #authorized(header: string | undefined): boolean {
    if (this.#paused || !header?.startsWith('Basic ')) return false;
    // Canonical base64 only: Node's decoder skips junk, so `dGlj{a2V0…` would decode to the same
    // credential; like the ticket inside it, the header has one spelling.
    const encoded = header.slice(6);
    const bytes = Buffer.from(encoded, 'base64');
    if (bytes.toString('base64') !== encoded) return false;
    const decoded = bytes.toString('latin1');
    const colon = decoded.indexOf(':');
    return colon > 0 && decoded.slice(0, colon) === TICKET_USERNAME && this.#ticketOk(decoded.slice(colon + 1));
  }

  /** Whether a ticket opens this peer now (valid, for this peer, unexpired). */
  ticketOk(ticket: string): boolean {
    return this.#ticketOk(ticket);
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
    // Its reads reuse buffers (reused-reads.ts): a relay's read costs no fresh 64 KiB allocation.
    // No Nagle: set once, when connected (a setNoDelay() before that sets it twice, a system call each).
    const upstream = connectReusingReads({ host: host.replace(/^\[|\]$/g, ''), port, lookup: guardedLookup(this.#o.allowPrivateDestinations), timeout: this.#limits.handshakeTimeoutMs, noDelay: true });
    upstream.on('error', () => upstream.destroy());
    upstream.once('timeout', () => upstream.destroy(new Error('connect timed out')));
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
   * A tunnel for a ticket holder (HTTP/1.1 CONNECT, SOCKS5 or an HTTP/2 stream). Once it takes a
   * slot, the slot (and the destination socket) is tied to the client side's close, so that however
   * the request ends, a fault included (the boundary closes the client side), nothing is left behind.
   */
  async #tunnel(client: Duplex, target: { host: string; port: number }, answer: { accept(): Buffer; fail(why: TunnelFailure): void }): Promise<void> {
    if (!this.#enter()) return answer.fail('busy');
    let upstream: Socket | undefined;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      this.#leave();
    };
    // Until the tunnel is spliced: the client side going away ends everything.
    const early = () => {
      upstream?.destroy();
      leave();
    };
    client.once('close', early);
    if (client.destroyed) return early();
    try {
      upstream = await this.#dial(target.host, target.port);
    } catch (err) {
      if (left) return;
      // The slot is given back now; the client side closes once the refusal is sent.
      leave();
      return answer.fail(LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN') ? 'forbidden' : 'unreachable');
    }
    if (left) return void upstream.destroy();
    client.off('close', early);
    const head = answer.accept();
    (client as Socket).setTimeout?.(this.#limits.idleTimeoutMs, () => {
      client.destroy();
      upstream?.destroy();
    });
    if (head.length) upstream.write(head);
    // Each side is closed gracefully once the other closes (the last bytes still arrive); the
    // slot is given back when the client side has closed.
    splice(client, upstream, { onBytes: this.#count, ...(this.#budget ? { budget: this.#budget } : {}) }, leave);
  }
}

/** Open streams per HTTP/2 session (Node keeps no public count). */
const openStreamCount = new WeakMap<object, number>();
const openStreams = (session: object) => openStreamCount.get(session) ?? 0;

/**
 * A session that nghttp2 gives up on (bytes that are no HTTP/2 client preface, above all) is
 * destroyed by Node with GOAWAY INTERNAL_ERROR; nginx answers them with PROTOCOL_ERROR. Node's
 * own destroy is kept; only the code it sends for such an error is nginx's.
 */
function asNginxEndsSessions(session: Http2Session): void {
  const destroy = session.destroy.bind(session);
  session.destroy = (error?: Error, code?: number) => {
    if (code === undefined && (error as { code?: string } | undefined)?.code === 'ERR_HTTP2_ERROR') return destroy(error, h2.NGHTTP2_PROTOCOL_ERROR);
    return destroy(error, code);
  };
}
