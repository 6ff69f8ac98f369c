import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { connect, isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { LanternError } from '../../core/errors.js';
import { connectPinned, connectSocks5, connectStatus, PeerTunnels, type PeerEndpoint, type Upstream } from '../../net/tunnel.js';
import type { CanaryResponse, PeerInfo, VerdictRequest } from '../../protocol/messages.js';

/** What the verifier knows of a candidate: where it is, how it is reached, the identity key it registered. */
export type Candidate = PeerEndpoint & Pick<PeerInfo, 'peerId'>;

export interface ProbeOptions {
  /** A second canary, fetched over SOCKS5 inside TLS once the HTTP/2 fetch passed. */
  socksCanary?: CanaryResponse;
  /**
   * `socks5`: the canary is fetched over the peer's SOCKS5 side inside TLS (a connection of its
   * own) instead of an HTTP/2 stream; a failed SOCKS5 tunnel is `socks5-failed`.
   */
  over?: 'socks5';
  /** Warm HTTP/2 connections to reuse (and leave open); default: a connection of its own, closed after. */
  tunnels?: PeerTunnels;
  /** Ticket the verifier presents (for this peer), as a get client would. */
  ticket: string;
  /** The server, as give peers reach it (the canary is fetched from there through the peer). */
  server: { host: string; port: number; tls: boolean; ca?: string };
  canary: CanaryResponse;
  /** The whole probe (dial, tunnel, identity, fetches) ends within this. */
  timeoutMs: number;
  maxLatencyMs: number;
  minMbps: number;
}

/** A verdict, and for a tunnel that failed the error's message: for the verifier's log, never posted. */
export type ProbeResult = VerdictRequest & { reason?: string };

/** What a WebRTC connection may take to come up, on top of a probe's timeout. */
const ICE_SETUP_MS = 15_000;

/** A plain TCP dial first, so "refused" and "timed out" are different, actionable statuses. */
async function dial(peer: Upstream, timeoutMs: number): Promise<'ok' | 'refused' | 'timeout' | 'unreachable'> {
  const socket = connect({ host: peer.host, port: peer.port });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    socket.destroy(new Error('timed out'));
  }, timeoutMs);
  try {
    await once(socket, 'connect');
    return 'ok';
  } catch (err) {
    if (timedOut) return 'timeout';
    return (err as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'refused' : 'unreachable';
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

/**
 * A failed tunnel as a verdict status: the dial (refused, unanswered, unreachable), not the
 * registered peer, no TLS, or the tunnel itself.
 */
function tunnelStatus(err: unknown, timedOut: boolean): string {
  const connecting = connectStatus(err, timedOut);
  if (connecting) return connecting;
  // A peer behind a NAT that did not answer the offer, or no WebRTC path to it.
  if (LanternError.is(err) && err.details?.['stage'] === 'ice') return 'ice-failed';
  if (timedOut) return 'timeout';
  // The peer's destination guard refused the canary's address (a server on a private address).
  if (LanternError.is(err) && err.details?.['peerStatus'] === 403) return 'destination-refused';
  return 'tunnel-failed';
}

/**
 * Verifies one give peer end to end, as a get client uses it, with the get role's own transport:
 * TLS pinned to the registered identity key (another key at that address fails with
 * `identity-mismatch`; a peer without TLS is never admitted), an HTTP/2 CONNECT tunnel, and a real
 * fetch of a fresh canary through it, checked for length and sha256, a latency ceiling and a
 * throughput floor; then, with `o.socksCanary`, SOCKS5 inside TLS. All within `timeoutMs`.
 *
 * There is no dial of its own before the TLS connection (an empty connection just before a
 * tunnel is something no get client does): a refused or unanswered dial is told from the TLS
 * connection's own failure. With `o.tunnels` the tunnel is a stream on a warm HTTP/2 connection
 * kept from earlier probes, as a get client's tunnels are.
 */
export async function probePeer(peer: Candidate, o: ProbeOptions): Promise<ProbeResult> {
  // A peer behind a NAT is connected to first (an offer and an answer through the server, then
  // ICE), as a get client connects to it; that set-up is not held against the probe's timeout.
  const deadline = performance.now() + o.timeoutMs + (peer.ice ? ICE_SETUP_MS : 0);
  const left = () => Math.max(1, Math.round(deadline - performance.now()));
  if (peer.plaintext) {
    const dialed = await dial(peer, left());
    return { ok: false, status: dialed === 'ok' ? 'plaintext' : dialed };
  }
  const tunnels = o.tunnels ?? new PeerTunnels();
  const done = () => o.tunnels || tunnels.close();
  const target = { host: o.server.host, port: o.server.port };
  let tunnel: Duplex;
  try {
    tunnel = o.over === 'socks5' ? await connectSocks5(await connectPinned(peer, left(), ['http/1.1']), o.ticket, target, left()) : await tunnels.open(peer, o.ticket, target, left());
  } catch (err) {
    done();
    const status = tunnelStatus(err, performance.now() >= deadline);
    return { ok: false, status: o.over === 'socks5' && (status === 'tunnel-failed' || status === 'tls-failed') ? 'socks5-failed' : status, reason: (err as Error).message };
  }
  try {
    const fetched = await fetchCanary(tunnel, o.server, o.canary, left());
    if ('status' in fetched) return { ok: false, status: fetched.status };
    const { body, firstByteMs, seconds } = fetched;
    const mbps = (body.length * 8) / seconds / 1e6;
    const measured = { latencyMs: Math.round(firstByteMs * 10) / 10, throughputMbps: Math.round(mbps * 10) / 10 };
    if (!matches(body, o.canary)) return { ok: false, status: 'bad-content', ...measured };
    if (firstByteMs > o.maxLatencyMs) return { ok: false, status: 'slow', ...measured };
    if (mbps < o.minMbps) return { ok: false, status: 'low-throughput', ...measured };
    if (o.socksCanary && !(await fetchOverSocks(peer, o.ticket, o.server, o.socksCanary, left()))) return { ok: false, status: 'socks5-failed', ...measured };
    return { ok: true, status: 'ok', ...measured };
  } finally {
    tunnel.destroy();
    done();
  }
}

const matches = (body: Buffer, canary: CanaryResponse) => body.length === canary.length && createHash('sha256').update(body).digest('hex') === canary.sha256;

/** The Host header as a browser writes it: the scheme's default port left out. */
function hostHeader(server: ProbeOptions['server']): string {
  const host = isIP(server.host) === 6 ? `[${server.host}]` : server.host;
  return server.port === (server.tls ? 443 : 80) ? host : `${host}:${server.port}`;
}

/** GET of the canary over a tunnel (TLS to the server inside it when the server has TLS). */
async function fetchCanary(
  tunnel: Duplex,
  server: ProbeOptions['server'],
  canary: CanaryResponse,
  timeoutMs: number,
): Promise<{ body: Buffer; firstByteMs: number; seconds: number } | { status: string }> {
  // SNI as a browser sends it: the name, never an IP address.
  const socket: Duplex = server.tls ? tlsConnect({ socket: tunnel as Socket, host: server.host, ...(isIP(server.host) ? {} : { servername: server.host }), ...(server.ca ? { ca: server.ca } : {}) }) : tunnel;
  const started = performance.now();
  let timedOut = false;
  try {
    const { body, firstByteMs } = await new Promise<{ body: Buffer; firstByteMs: number }>((resolve, reject) => {
      const timer = setTimeout(() => {
        timedOut = true;
        reject(new Error('timed out'));
      }, timeoutMs);
      const req = httpRequest(
        { method: 'GET', path: canary.path, headers: { host: hostHeader(server), connection: 'close' }, createConnection: () => socket as Socket },
        (res) => {
          const firstByteMs = performance.now() - started;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            clearTimeout(timer);
            resolve({ body: Buffer.concat(chunks), firstByteMs });
          });
          res.on('error', reject);
        },
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      req.end();
    });
    return { body, firstByteMs, seconds: (performance.now() - started) / 1000 };
  } catch {
    return { status: timedOut ? 'timeout' : 'fetch-failed' };
  } finally {
    socket.destroy();
  }
}

/** The same kind of fetch over the peer's SOCKS5 side, inside TLS pinned to the peer's key. */
async function fetchOverSocks(peer: PeerEndpoint, ticket: string, server: ProbeOptions['server'], canary: CanaryResponse, timeoutMs: number): Promise<boolean> {
  try {
    const socket = await connectPinned(peer, timeoutMs, ['http/1.1']);
    const tunnel = await connectSocks5(socket, ticket, { host: server.host, port: server.port }, timeoutMs);
    const fetched = await fetchCanary(tunnel, server, canary, timeoutMs);
    tunnel.destroy();
    return 'body' in fetched && matches(fetched.body, canary);
  } catch {
    return false;
  }
}
