import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { LanternError } from '../core/errors.js';
import type { FaultBoundary } from '../core/fault-boundary.js';
import { finish } from './finish.js';
import { HandshakeReader } from './handshake-reader.js';
import { connectTarget, httpHead, MAX_HEAD_BYTES, type HttpHead } from './http-head.js';
import { firstByte, SOCKS, SOCKS_REPLY, socksGreeting, socksReply, socksRequest, socksUserPass } from './socks5.js';

/** How a tunnel request ended when it did not become a tunnel. */
export type TunnelFailure = 'bad-request' | 'forbidden' | 'unreachable' | 'busy';

/**
 * A failure told to the client in its own words (get's local proxy): the HTTP status line and a
 * short text body naming the cause and the next step, and the SOCKS5 reply code. Without one, a
 * failure gets the bare status of its TunnelFailure (give's proxy, which answers as nginx would).
 */
export interface FailureAnswer {
  status: number;
  reason: string;
  text: string;
  socks: number;
}

/** The whole HTTP/1.1 answer carrying a FailureAnswer. */
export function explainedRefusal(a: FailureAnswer): string {
  const body = `${a.text}\n`;
  return `HTTP/1.1 ${a.status} ${a.reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** A CONNECT (HTTP) or SOCKS5 CONNECT request, answered with `accept` or `fail`. */
export interface TunnelRequest {
  protocol: 'http' | 'socks5';
  /** The destination; undefined for a CONNECT whose target is not `host:port`. */
  target: { host: string; port: number } | undefined;
  /** The HTTP request head (CONNECT only). */
  head?: HttpHead;
  socket: Socket;
  /**
   * Sends the success answer (`extraHeaders` are HTTP header lines, each ending in CRLF) and hands
   * the socket over, paused: returns the bytes the client already sent past its request.
   */
  accept(extraHeaders?: string): Buffer;
  /** Sends the protocol's failure answer and closes. */
  fail(why: TunnelFailure, answer?: FailureAnswer): void;
  /** Instead of either: stops reading and returns every byte received since the connection began (for a decoy). */
  giveUp(): Buffer;
}

/** Why a connection got no request at all. */
export type RefusalReason = 'malformed' | 'timeout' | 'socks-method' | 'socks-auth';

export interface ProxyFrontEndHandlers {
  /** SOCKS5 user/password check (give: the ticket); without it SOCKS5 clients use no authentication. */
  socksCredentials?: (user: Buffer, password: Buffer) => boolean;
  tunnel(request: TunnelRequest): Promise<void> | void;
  /**
   * Any other HTTP request head: forward proxying (absolute form) or something that is no proxy
   * request. `handOff` passes the connection, head included, to a Node HTTP server.
   */
  http(head: HttpHead, socket: Socket, handOff: (server: HttpServer) => void, giveUp: () => Buffer): Promise<void> | void;
  /** A connection that never made a request: the handshake was malformed, late, or refused; `buffered` is what it sent. */
  refuse(socket: Socket, reason: RefusalReason, buffered: Buffer): void;
}

export interface ProxyFrontEndOptions {
  /** Deadline for the first bytes, and then for each handshake step (a request head, a SOCKS5 message). */
  handshakeTimeoutMs: number;
}

/** The HTTP status a failed tunnel request is answered with (give also answers HTTP/2 streams with it). */
export const TUNNEL_FAILURE_STATUS: Record<TunnelFailure, number> = { 'bad-request': 400, forbidden: 403, unreachable: 502, busy: 503 };
const REASON: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 502: 'Bad Gateway', 503: 'Service Unavailable' };

/** The whole HTTP/1.1 answer to a CONNECT that gets no tunnel (status 400, 403, 502 or 503). */
export const connectRefusal = (status: number) => `HTTP/1.1 ${status} ${REASON[status]}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`;

const SOCKS_CODE: Record<TunnelFailure, number> = {
  'bad-request': SOCKS_REPLY.failure,
  forbidden: SOCKS_REPLY.notAllowed,
  unreachable: SOCKS_REPLY.hostUnreachable,
  busy: SOCKS_REPLY.failure,
};

/**
 * How a SOCKS5 request read by `reader` is answered: success (then the bytes read past the
 * request go on into the tunnel), or the reply code of its failure, and the end.
 */
export function socksAnswers(socket: Socket, reader: HandshakeReader): { accept(): Buffer; fail(why: TunnelFailure, answer?: FailureAnswer): void } {
  return {
    accept: () => {
      socket.write(socksReply(SOCKS_REPLY.ok));
      return reader.release();
    },
    fail: (why, answer) => {
      reader.release();
      finish(socket, socksReply(answer ? answer.socks : SOCKS_CODE[why]));
    },
  };
}

/**
 * The front end shared by give's proxy and get's local proxy: one port serving HTTP CONNECT, HTTP
 * forward and SOCKS5 (told apart by the first byte). Every handshake is read by incremental
 * parsers fed by `data` events, each step under a deadline; the whole connection runs inside the
 * `proxy` fault boundary. What to do with a request is the handlers' business.
 */
export class ProxyFrontEnd {
  readonly #faults: FaultBoundary;
  readonly #o: ProxyFrontEndOptions;
  readonly #h: ProxyFrontEndHandlers;

  constructor(components: { faults: FaultBoundary }, options: ProxyFrontEndOptions, handlers: ProxyFrontEndHandlers) {
    this.#faults = components.faults;
    this.#o = options;
    this.#h = handlers;
  }

  /** Takes a freshly accepted connection. */
  serve(socket: Socket): void {
    const reader = new HandshakeReader(socket, { maxBytes: MAX_HEAD_BYTES });
    this.#faults.run(
      'proxy',
      async () => {
        try {
          const first = await reader.read(firstByte, this.#o.handshakeTimeoutMs);
          if (first === SOCKS.version) await this.#socks(socket, reader);
          else await this.#http(socket, reader);
        } catch (err) {
          if (LanternError.is(err, 'LA_ERR_REQUEST_TIMEOUT')) return this.#h.refuse(socket, 'timeout', reader.replay());
          if (LanternError.is(err, 'LA_ERR_PROTOCOL')) return this.#h.refuse(socket, 'malformed', reader.replay());
          throw err;
        }
      },
      () => socket.destroy(),
    );
  }

  async #http(socket: Socket, reader: HandshakeReader): Promise<void> {
    const head = await reader.read(httpHead, this.#o.handshakeTimeoutMs);
    const giveUp = () => reader.replay();
    if (head.method !== 'CONNECT') {
      return this.#h.http(
        head,
        socket,
        (server) => {
          socket.unshift(giveUp());
          server.emit('connection', socket);
          socket.resume();
        },
        giveUp,
      );
    }
    await this.#h.tunnel({
      protocol: 'http',
      target: connectTarget(head.target),
      head,
      socket,
      accept: (extraHeaders = '') => {
        socket.write(`HTTP/1.1 200 Connection Established\r\n${extraHeaders}\r\n`);
        return reader.release();
      },
      fail: (why, answer) => {
        reader.release();
        finish(socket, answer ? explainedRefusal(answer) : connectRefusal(TUNNEL_FAILURE_STATUS[why]));
      },
      giveUp,
    });
  }

  async #socks(socket: Socket, reader: HandshakeReader): Promise<void> {
    const t = this.#o.handshakeTimeoutMs;
    const { methods } = await reader.read(socksGreeting, t);
    const check = this.#h.socksCredentials;
    if (check) {
      if (!methods.includes(SOCKS.userPass)) return this.#h.refuse(socket, 'socks-method', reader.replay());
      socket.write(Buffer.from([SOCKS.version, SOCKS.userPass]));
      const { user, password } = await reader.read(socksUserPass, t);
      if (!check(user, password)) return this.#h.refuse(socket, 'socks-auth', reader.replay());
      socket.write(Buffer.from([1, 0]));
    } else {
      if (!methods.includes(SOCKS.noAuth)) return finish(socket, Buffer.from([SOCKS.version, SOCKS.noAcceptable]));
      socket.write(Buffer.from([SOCKS.version, SOCKS.noAuth]));
    }
    const request = await reader.read(socksRequest, t);
    if ('refuse' in request) {
      reader.release();
      return finish(socket, socksReply(request.refuse));
    }
    await this.#h.tunnel({ protocol: 'socks5', target: request, socket, ...socksAnswers(socket, reader), giveUp: () => reader.replay() });
  }
}
