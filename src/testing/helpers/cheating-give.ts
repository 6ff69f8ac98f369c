import { constants as h2, createServer as createH2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { systemClock } from '../../core/clock.js';
import { silentLogger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import type { ApiClient } from '../../net/api-client.js';
import { connectTarget } from '../../net/http-head.js';
import { listen } from '../../net/listen.js';
import { connectPinned, PeerTunnels, type PeerEndpoint } from '../../net/tunnel.js';
import { createGive } from '../../roles/give/index.js';

/** Everything a give peer can observe of one tunnel request, before it decides to serve it. */
export interface Seen {
  /** Milliseconds since the peer started. */
  at: number;
  /** The connecting address. */
  address: string;
  /** Which TLS connection it came on (1 = the first the peer accepted), and its place on it (1 = first stream). */
  connection: number;
  stream: number;
  /** `h2`: an HTTP/2 CONNECT stream; `http/1.1`: a connection speaking HTTP/1.1 or SOCKS5 inside TLS. */
  transport: 'h2' | 'http/1.1';
  /** Every request header but the ticket, names and values in order (h2 only). */
  headers: string;
  /** Where to (h2 only): the CONNECT authority. */
  authority: string;
  /** The ticket's field names, and its subject (h2 only). */
  ticketFields: string;
  sub: string;
  /** Served, or dropped by the rule. */
  served: boolean;
}

/**
 * The cheat: given one tunnel request and the requests it saw while it was a candidate (when only
 * verifiers know a peer, every request is a probe), serve it or not.
 */
export type CheatRule = (seen: Omit<Seen, 'served'>, learned: readonly Seen[], before: readonly Seen[]) => boolean;

/** The ticket inside `Proxy-Authorization: Basic base64("ticket:" + TICKET)`, its claims decoded. */
function ticketClaims(header: unknown): Record<string, unknown> {
  try {
    const basic = Buffer.from(String(header).replace(/^Basic /, ''), 'base64').toString('latin1');
    return JSON.parse(Buffer.from(basic.replace(/^ticket:/, '').split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
  } catch {
    return {};
  }
}

type CountedSocket = Socket & { cheatConnection?: number; cheatStreams?: number };

/** What the peer sees of an HTTP/2 CONNECT stream, before it answers. */
function observeStream(headers: IncomingHttpHeaders, socket: CountedSocket, started: number): Omit<Seen, 'served'> {
  const claims = ticketClaims(headers['proxy-authorization']);
  return {
    at: performance.now() - started,
    address: socket.remoteAddress ?? '',
    connection: socket.cheatConnection ?? 0,
    stream: socket.cheatStreams ?? 0,
    transport: 'h2',
    headers: Object.entries(headers)
      .filter(([name]) => name !== 'proxy-authorization' && name !== ':authority')
      .map(([name, value]) => `${name}: ${String(value)}`)
      .join('\n'),
    authority: String(headers[':authority']),
    ticketFields: Object.keys(claims).join(' '),
    sub: String(claims['sub']),
  };
}

/** A served stream: relayed through the real give proxy, with the same ticket to the same destination. */
function relayStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, tunnels: PeerTunnels, inner: PeerEndpoint): void {
  const target = connectTarget(String(headers[':authority']));
  if (!target) return stream.close(h2.NGHTTP2_REFUSED_STREAM);
  const ticket = Buffer.from(String(headers['proxy-authorization']).replace(/^Basic /, ''), 'base64').toString('latin1').replace(/^ticket:/, '');
  tunnels.open(inner, ticket, target, 5000).then(
    (tunnel: Duplex) => {
      if (stream.destroyed) return tunnel.destroy();
      stream.respond({ ':status': 200 });
      stream.pipe(tunnel).pipe(stream);
      tunnel.on('error', () => stream.destroy());
      stream.once('close', () => tunnel.destroy());
    },
    () => !stream.destroyed && stream.respond({ ':status': 502 }, { endStream: true }),
  );
}

/**
 * A cheating give peer for tests: the real give role (its proxy, its registration, its identity),
 * with a front holding the same identity key that sees each tunnel request as the peer does
 * (after TLS) and serves it only if `rule` says so; a dropped HTTP/2 stream is refused
 * (RST_STREAM), as a peer that wants users to fail over would. Until `enforce()` it serves
 * everything and learns: what it saw then is `learned`, the rule's knowledge of probes.
 * HTTP/1.1 and SOCKS5 connections (which only verifiers make) are always served, and recorded.
 */
export async function cheatingGive(t: { teardown(fn: () => unknown): void }, api: ApiClient, rule: CheatRule) {
  const identity = new PeerIdentity();
  const creds = identity.tlsCredentials();
  const started = performance.now();
  const seen: Seen[] = [];
  const learned: Seen[] = [];
  let enforcing = false;
  let connections = 0;
  let inner: PeerEndpoint | undefined;
  const tunnels = new PeerTunnels();

  const h2Front = createH2Server();
  h2Front.on('session', (session) => session.on('error', () => session.destroy()));
  h2Front.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    stream.on('error', () => stream.destroy());
    const socket = stream.session?.socket as CountedSocket | undefined;
    if (!socket || !inner) return stream.close(h2.NGHTTP2_REFUSED_STREAM);
    socket.cheatStreams = (socket.cheatStreams ?? 0) + 1;
    const observed = observeStream(headers, socket, started);
    const served = !enforcing || rule(observed, learned, seen);
    const record = { ...observed, served };
    seen.push(record);
    if (!enforcing) learned.push(record);
    if (!served) return stream.close(h2.NGHTTP2_REFUSED_STREAM);
    relayStream(stream, headers, tunnels, inner);
  });

  const front = createTlsServer({ cert: creds.certificatePem, key: creds.privateKeyPem, ALPNProtocols: ['h2', 'http/1.1'] });
  front.on('tlsClientError', (_err, socket: Socket) => socket.destroy());
  // TCP connections that never completed TLS (a bare dial before a tunnel would be one).
  let bare = 0;
  const securedPorts = new Set<number>();
  front.on('connection', (socket: Socket) => {
    const port = socket.remotePort;
    socket.once('close', () => void (port !== undefined && !securedPorts.has(port) && bare++));
  });
  front.on('secureConnection', (socket: TLSSocket & { cheatConnection?: number }) => {
    socket.on('error', () => socket.destroy());
    socket.cheatConnection = ++connections;
    if (socket.remotePort !== undefined) securedPorts.add(socket.remotePort);
    if (socket.alpnProtocol === 'h2') return void h2Front.emit('connection', socket);
    // HTTP/1.1 or SOCKS5 inside TLS: relayed byte for byte to the real give proxy, recorded.
    seen.push({ at: performance.now() - started, address: socket.remoteAddress ?? '', connection: socket.cheatConnection, stream: 1, transport: 'http/1.1', headers: '', authority: '', ticketFields: '', sub: '', served: true });
    if (!enforcing) learned.push(seen.at(-1)!);
    connectPinned(inner!, 5000, ['http/1.1']).then(
      (upstream) => {
        socket.pipe(upstream).pipe(socket);
        upstream.on('error', () => socket.destroy());
        socket.once('close', () => upstream.destroy());
      },
      () => socket.destroy(),
    );
  });
  const port = (await listen(front, '127.0.0.1', 0)).port;

  // The real give role, registered at the front's port.
  const give = createGive(
    { api, clock: systemClock, logger: silentLogger(), ticketKey: await api.ticketKey(), identity },
    { host: '127.0.0.1', port: 0, plaintext: false, register: true, publicPort: port, allowPrivateDestinations: true, maxClients: 64, advertiseTo: [], adLifetimeMs: 60_000 },
  );
  await give.start();
  inner = { host: '127.0.0.1', port: Number(new URL(give.url).port), identityKey: identity.publicKey };
  const stop = async () => {
    await give.stop();
    tunnels.close();
    front.close();
    h2Front.close();
  };
  t.teardown(stop);
  return {
    port,
    peerId: give.registration!.peerId,
    seen,
    learned,
    /** TCP connections that closed without a TLS session. */
    bareConnections: () => bare,
    /** From now on the rule decides. */
    enforce: () => void (enforcing = true),
    stop,
  };
}
