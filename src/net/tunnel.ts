import { connect as http2Connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { LanternError } from '../core/errors.js';
import { certificateKey } from '../crypto/peer-identity.js';
import { TICKET_USERNAME } from '../protocol/ticket.js';
import type { Address } from '../protocol/messages.js';
import { HandshakeReader } from './handshake-reader.js';
import type { IceTunnels } from './ice/ice-tunnels.js';
import { httpResponseHead } from './http-head.js';
import { SOCKS, socksRequestBytes } from './socks5.js';

export interface Upstream {
  host: string;
  port: number;
}

/** A give peer as clients reach it: where, and the identity key its TLS certificate must carry. */
export interface PeerEndpoint extends Upstream {
  identityKey: string;
  /** A peer started with `give --plaintext` (local tests only): no TLS, nothing pinned. */
  plaintext?: boolean;
  /** The TLS server name to send (a peer with a name); none for an address, as browsers do. */
  sniName?: string;
  /** A peer behind a NAT, reached over WebRTC: the device its offers go to (its address is not dialed). */
  ice?: Address;
}

/** The Proxy-Authorization value carrying a ticket. */
export function ticketAuthorization(ticket: string): string {
  return `Basic ${Buffer.from(`${TICKET_USERNAME}:${ticket}`).toString('base64')}`;
}

const unreachable = (message: string, cause?: unknown) => new LanternError('LA_ERR_DESTINATION_UNREACHABLE', message, cause === undefined ? {} : { cause });
/** The peer answered the CONNECT with another status than 200 (403: its destination guard; 502: the destination). */
const refusedBy = (status: number) => new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `The peer answered ${status}`, { details: { peerStatus: status } });
const where = (p: Upstream) => `${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`;

/**
 * A TLS connection to a give peer whose certificate key is the peer's registered identity key:
 * LA_ERR_PEER_IDENTITY_MISMATCH when it is another key (someone else's proxy at that address, or
 * a man in the middle), LA_ERR_DESTINATION_UNREACHABLE when the peer cannot be reached or speaks
 * no TLS. ALPN offers h2 and http/1.1, as browsers do.
 */
export async function connectPinned(peer: PeerEndpoint, timeoutMs: number, alpn: string[] = ['h2', 'http/1.1']): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: peer.host,
    port: peer.port,
    ...(peer.sniName ? { servername: peer.sniName } : {}),
    ALPNProtocols: alpn,
    // The certificate is self-signed: what is checked is its key, below.
    rejectUnauthorized: false,
  });
  // Tunnels carry interactive traffic, and an HTTP/2 connection carries many: a small write (a
  // new stream's HEADERS, a keystroke) must not wait behind an unacknowledged one (Nagle).
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  // Whether the TCP connection was made: a refused or unanswered dial is not a failed handshake.
  let connected = false;
  socket.once('connect', () => (connected = true));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    socket.destroy(new Error(`TLS to ${where(peer)} timed out`));
  }, timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('closed during the TLS handshake')));
    });
  } catch (err) {
    socket.destroy();
    const details = { stage: connected ? 'tls' : 'tcp', ...(timedOut ? { timedOut: true } : {}), ...((err as NodeJS.ErrnoException).code ? { errno: (err as NodeJS.ErrnoException).code } : {}) };
    throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `TLS to ${where(peer)} failed: ${(err as Error).message}`, { cause: err, details });
  } finally {
    clearTimeout(timer);
  }
  const cert = socket.getPeerX509Certificate();
  if (!cert || certificateKey(cert) !== peer.identityKey) {
    socket.destroy();
    throw new LanternError('LA_ERR_PEER_IDENTITY_MISMATCH', `The TLS server at ${where(peer)} does not hold the peer's registered identity key`);
  }
  return socket;
}

/**
 * Why connectPinned failed, as a status: `identity-mismatch` (another key answers there), the dial
 * (`refused`, `timeout`, `unreachable`), or `tls-failed` (something answered, but no TLS).
 * Undefined for any other error.
 */
export function connectStatus(err: unknown, timedOut = false): 'identity-mismatch' | 'refused' | 'timeout' | 'unreachable' | 'tls-failed' | undefined {
  if (LanternError.is(err, 'LA_ERR_PEER_IDENTITY_MISMATCH')) return 'identity-mismatch';
  const details = LanternError.is(err) ? err.details : undefined;
  if (details?.['stage'] === 'tcp') {
    if (details['errno'] === 'ECONNREFUSED') return 'refused';
    return timedOut || details['timedOut'] ? 'timeout' : 'unreachable';
  }
  if (details?.['stage'] === 'tls') return timedOut || details['timedOut'] ? 'timeout' : 'tls-failed';
  return undefined;
}

/** A plain TCP connection (for `--plaintext` peers). */
async function connectPlain(peer: Upstream, timeoutMs: number): Promise<Socket> {
  const socket = netConnect({ host: peer.host, port: peer.port, timeout: timeoutMs });
  socket.on('error', () => undefined);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('timeout', () => reject(new Error('timed out')));
      socket.once('error', reject);
    });
    socket.setTimeout(0);
    socket.setNoDelay(true);
    return socket;
  } catch (err) {
    socket.destroy();
    throw unreachable(`Cannot reach ${where(peer)}: ${(err as Error).message}`, err);
  }
}

/** HTTP/1.1 CONNECT on an open connection (plaintext or inside TLS); the socket becomes the tunnel. */
export async function connectHttp1(socket: Socket, ticket: string, target: Upstream, timeoutMs: number): Promise<Duplex> {
  const authority = where(target);
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: ${ticketAuthorization(ticket)}\r\n\r\n`);
  const reader = new HandshakeReader(socket, { maxBytes: 16 * 1024 });
  try {
    const head = await reader.read(httpResponseHead, timeoutMs);
    if (head.status !== 200) throw refusedBy(head.status);
  } catch (err) {
    socket.destroy();
    throw LanternError.is(err, 'LA_ERR_DESTINATION_UNREACHABLE') ? err : unreachable(`CONNECT failed: ${(err as Error).message}`, err);
  }
  const rest = reader.release();
  if (rest.length) socket.unshift(rest);
  socket.resume();
  return socket;
}

/**
 * SOCKS5 with the ticket as password on an open connection (plaintext or inside TLS). The greeting,
 * the credentials and the request go out in one write: a give peer answers a SOCKS5 greeting alone
 * as nginx would (400), so the ticket must come with it.
 */
export async function connectSocks5(socket: Socket, ticket: string, target: Upstream, timeoutMs: number): Promise<Duplex> {
  const reader = new HandshakeReader(socket, { maxBytes: 1024 });
  const fixed = (n: number) => (b: Buffer) => (b.length >= n ? { value: Buffer.from(b.subarray(0, n)), used: n } : undefined);
  try {
    const user = Buffer.from(TICKET_USERNAME);
    const pass = Buffer.from(ticket);
    socket.write(Buffer.concat([Buffer.from([SOCKS.version, 1, SOCKS.userPass, 1, user.length]), user, Buffer.from([pass.length]), pass, socksRequestBytes(target)]));
    const replies = await reader.read(fixed(2 + 2 + 10), timeoutMs);
    if (replies[1] !== SOCKS.userPass || replies[3] !== 0) throw new Error('ticket refused');
    if (replies[5] !== 0) throw new Error(`reply ${replies[5]}`);
  } catch (err) {
    socket.destroy();
    throw unreachable(`SOCKS5 failed: ${(err as Error).message}`, err);
  }
  const rest = reader.release();
  if (rest.length) socket.unshift(rest);
  socket.resume();
  return socket;
}

/** HTTP/2 stream limit per session that this client uses before opening another session. */
const STREAMS_PER_SESSION = 100;
/**
 * Tunnels a session carries in its life before it takes no new ones. A peer's HTTP/2 server
 * (nghttp2 ≥ 1.57, in Node) answers more than 1,000 received resets, refilled at 33 a second, with
 * GOAWAY INTERNAL_ERROR, which would end every tunnel on the session. A browser closing connections
 * resets one stream per connection, and even a tunnel closed gracefully from both ends may end in
 * a RST_STREAM (NO_ERROR) from this side, which the peer counts alike: so every tunnel is counted.
 * Retired at half the limit, a session's remaining streams (at most STREAMS_PER_SESSION) stay
 * within it, and new tunnels go to a fresh session (one TLS handshake per 500 tunnels).
 */
const TUNNELS_PER_SESSION = 500;
/** The client's receive windows: large enough for a fast link with real latency. */
const H2_SETTINGS = { initialWindowSize: 1024 * 1024, enablePush: false };
const H2_CONNECTION_WINDOW = 16 * 1024 * 1024;

/**
 * Tunnels through give peers, as get and the verifier open them: over TLS pinned to the peer's
 * identity key, multiplexed as HTTP/2 CONNECT streams (RFC 9113 §8.5) on one warm connection per
 * peer, so a new tunnel costs a stream, not a handshake; HTTP/1.1 CONNECT inside TLS when the peer
 * does not speak h2; plain HTTP/1.1 CONNECT to `--plaintext` peers (local tests). The ticket only
 * ever travels inside TLS (or on a plaintext peer's loopback).
 */
export class PeerTunnels {
  readonly #sessions = new Map<string, Array<Promise<ClientHttp2Session | undefined>>>();
  readonly #ice: IceTunnels | undefined;
  #closed = false;

  /** `ice`: how peers behind a NAT are reached (data channels over WebRTC); without it they cannot be. */
  constructor(o: { ice?: IceTunnels } = {}) {
    this.#ice = o.ice;
  }

  /** How tunnels to this peer run: `direct` (TLS to its address), or over WebRTC (`ice`, `turn`; undefined until connected). */
  path(peer: PeerEndpoint): 'direct' | 'ice' | 'turn' | undefined {
    if (!peer.ice) return 'direct';
    return this.#ice?.path({ identityKey: peer.identityKey, ice: peer.ice });
  }

  /** Opens a tunnel to `target` through `peer` within `timeoutMs`. */
  async open(peer: PeerEndpoint, ticket: string, target: Upstream, timeoutMs = 5000): Promise<Duplex> {
    if (this.#closed) throw unreachable('The tunnels are closed');
    if (peer.ice) {
      if (!this.#ice) throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', 'This peer is reached over WebRTC, which needs a Signal identity on this home (log in again)', { details: { stage: 'ice' } });
      return this.#ice.open({ identityKey: peer.identityKey, ice: peer.ice }, ticket, target, timeoutMs);
    }
    if (peer.plaintext) return connectHttp1(await connectPlain(peer, timeoutMs), ticket, target, timeoutMs);
    const session = await this.#session(peer, timeoutMs);
    if (!session) return connectHttp1(await connectPinned(peer, timeoutMs, ['http/1.1']), ticket, target, timeoutMs);
    try {
      return await this.#stream(session, ticket, target, timeoutMs);
    } catch (err) {
      // A session the peer had just closed: once more on a fresh one.
      if (!session.closed && !session.destroyed) throw err;
      const fresh = await this.#session(peer, timeoutMs);
      if (!fresh) throw err;
      return this.#stream(fresh, ticket, target, timeoutMs);
    }
  }

  /** Ends every session (open tunnels on them end too). */
  close(): void {
    this.#closed = true;
    this.#ice?.close();
    for (const list of this.#sessions.values()) for (const s of list) s.then((session) => session?.destroy(), () => undefined);
    this.#sessions.clear();
  }

  /** A warm HTTP/2 session to the peer with room for another stream; undefined if it speaks only HTTP/1.1. */
  async #session(peer: PeerEndpoint, timeoutMs: number): Promise<ClientHttp2Session | undefined> {
    const key = `${where(peer)} ${peer.identityKey} ${peer.sniName ?? ''}`;
    const list = this.#sessions.get(key) ?? [];
    this.#sessions.set(key, list);
    for (const pending of list) {
      const s = await pending.catch(() => undefined);
      if (s && !s.closed && !s.destroyed && countStreams(s) < STREAMS_PER_SESSION) {
        const carried = opened.get(s) ?? 0;
        if (carried < TUNNELS_PER_SESSION) {
          // Nearing retirement: its successor connects now, so that no tunnel waits for a handshake.
          if (carried >= TUNNELS_PER_SESSION * 0.8 && !succeeded.has(s)) {
            succeeded.add(s);
            this.#add(list, peer, timeoutMs).catch(() => undefined);
          }
          return s;
        }
        // Retired: its open tunnels run on, then it closes; not reused.
        s.close();
      }
    }
    return this.#add(list, peer, timeoutMs);
  }

  /** A new session to the peer, listed until it closes. */
  #add(list: Array<Promise<ClientHttp2Session | undefined>>, peer: PeerEndpoint, timeoutMs: number): Promise<ClientHttp2Session | undefined> {
    const made = this.#connect(peer, timeoutMs);
    list.push(made);
    const forget = () => {
      const i = list.indexOf(made);
      if (i >= 0) list.splice(i, 1);
    };
    made.then((s) => (s ? s.once('close', forget) : forget()), forget);
    return made;
  }

  async #connect(peer: PeerEndpoint, timeoutMs: number): Promise<ClientHttp2Session | undefined> {
    const socket = await connectPinned(peer, timeoutMs);
    if (socket.alpnProtocol !== 'h2') {
      socket.destroy();
      return undefined;
    }
    const session = http2Connect(`https://${where(peer)}`, { createConnection: () => socket, settings: H2_SETTINGS });
    session.on('error', () => undefined);
    session.once('connect', () => session.setLocalWindowSize(H2_CONNECTION_WINDOW));
    // Idle sessions do not keep a process alive; open streams do.
    session.unref();
    return session;
  }

  #stream(session: ClientHttp2Session, ticket: string, target: Upstream, timeoutMs: number): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      let stream: ClientHttp2Stream;
      try {
        stream = session.request(
          { [h2.HTTP2_HEADER_METHOD]: 'CONNECT', [h2.HTTP2_HEADER_AUTHORITY]: where(target), 'proxy-authorization': ticketAuthorization(ticket) },
          { endStream: false },
        );
      } catch (err) {
        return reject(unreachable(`CONNECT failed: ${(err as Error).message}`, err));
      }
      openStreams.set(session, countStreams(session) + 1);
      opened.set(session, (opened.get(session) ?? 0) + 1);
      stream.once('close', () => openStreams.set(session, countStreams(session) - 1));
      // Once the tunnel is handed over its user listens too; a late session error must not be
      // unhandled in between.
      stream.on('error', () => undefined);
      let settled = false;
      const fail = (err: () => LanternError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream.close(h2.NGHTTP2_CANCEL);
        reject(err());
      };
      const timer = setTimeout(() => fail(() => unreachable(`CONNECT to ${where(target)} timed out`)), timeoutMs);
      stream.once('response', (headers) => {
        const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
        if (status !== 200) return fail(() => refusedBy(status));
        settled = true;
        clearTimeout(timer);
        resolve(withoutEmptyWrites(stream));
      });
      stream.once('error', (err) => fail(() => unreachable(`CONNECT failed: ${err.message}`, err)));
      stream.once('close', () => fail(() => unreachable('The peer closed the stream')));
    });
  }
}

/**
 * An HTTP/2 stream that leaves empty writes out of a batch. Node 20's Http2Stream loses bytes when
 * a corked batch of writes (one `_writev`) ends with an empty one, which is how Node's HTTP client
 * ends a request with a Content-Length (`end()` writes ''): the batch is reported written when
 * nghttp2 reaches the empty buffer, which frees the batch's copies of its strings while their DATA
 * frames are still to be filled from them. The first 16 bytes of the request head then went out as
 * the allocator's bookkeeping, and the origin answered 400. An empty write carries nothing.
 */
export function withoutEmptyWrites<T extends Duplex>(stream: T): T {
  const writev = stream._writev;
  if (!writev) return stream;
  stream._writev = function (this: T, chunks, callback) {
    const kept = chunks.filter((c) => (c.chunk as Buffer | string).length > 0);
    if (kept.length === 0) return callback();
    writev.call(this, kept, callback);
  };
  return stream;
}

/** Open tunnels per session (Node keeps no public count). */
const openStreams = new WeakMap<ClientHttp2Session, number>();
const countStreams = (session: ClientHttp2Session) => openStreams.get(session) ?? 0;
/** Tunnels a session has carried (TUNNELS_PER_SESSION). */
const opened = new WeakMap<ClientHttp2Session, number>();
/** Sessions whose successor is already connecting. */
const succeeded = new WeakSet<ClientHttp2Session>();
