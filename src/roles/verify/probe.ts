import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { get as httpGet, request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Duplex } from 'node:stream';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { checkPeerProof } from '../../crypto/peer-identity.js';
import { connectTunnel, type Upstream } from '../../net/tunnel.js';
import { TICKET_USERNAME } from '../../protocol/ticket.js';
import type { CanaryResponse, PeerInfo, VerdictRequest } from '../../protocol/messages.js';

/** What the verifier knows of a candidate: where it is and the identity key it registered. */
export type Candidate = Upstream & Pick<PeerInfo, 'peerId' | 'identityKey'>;

export interface ProbeOptions {
  /** A second canary, fetched over SOCKS5 (socks-proxy-agent) once the CONNECT fetch passed. */
  socksCanary?: CanaryResponse;
  /** Ticket the verifier presents, as a get client would. */
  ticket: string;
  /** The server, as give peers reach it (the canary is fetched from there through the peer). */
  server: { host: string; port: number; tls: boolean; ca?: string };
  canary: CanaryResponse;
  /** The whole probe (dial, tunnel, identity, fetches) ends within this. */
  timeoutMs: number;
  maxLatencyMs: number;
  minMbps: number;
}

/** A plain TCP dial first, so "refused" and "timed out" are different, actionable statuses. */
async function dial(peer: Upstream, timeoutMs: number): Promise<'ok' | 'refused' | 'timeout' | 'unreachable'> {
  const socket = connect({ host: peer.host, port: peer.port });
  const timer = setTimeout(() => socket.destroy(new Error('timeout')), timeoutMs);
  try {
    await once(socket, 'connect');
    return 'ok';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ECONNREFUSED' ? 'refused' : (err as Error).message === 'timeout' ? 'timeout' : 'unreachable';
  } finally {
    clearTimeout(timer);
    socket.destroy();
  }
}

/**
 * Verifies one give peer end to end, as a get client uses it: dial, then a tunnel through it with
 * the get role's own tunnel code, carrying a fresh challenge the proxy must answer with a proof for
 * the registered identity key and peer id, then a real fetch of a fresh canary through that tunnel,
 * checked for length and sha256, a latency ceiling and a throughput floor. All within `timeoutMs`.
 */
export async function probePeer(peer: Candidate, o: ProbeOptions): Promise<VerdictRequest> {
  const deadline = performance.now() + o.timeoutMs;
  const left = () => Math.max(1, Math.round(deadline - performance.now()));
  const dialed = await dial(peer, left());
  if (dialed !== 'ok') return { ok: false, status: dialed };
  const challenge = randomBytes(18).toString('base64url');
  let tunnel: Duplex;
  try {
    const opened = await connectTunnel(peer, o.ticket, { host: o.server.host, port: o.server.port }, left(), challenge);
    tunnel = opened.socket;
    const identity = checkPeerProof(peer.identityKey, peer.peerId, challenge, opened.proof);
    if (identity !== 'ok') {
      tunnel.destroy();
      // Someone else's proxy (or no give peer at all) answers at the registered address.
      return { ok: false, status: identity === 'missing' ? 'no-identity-proof' : 'identity-mismatch' };
    }
  } catch {
    return { ok: false, status: performance.now() >= deadline ? 'timeout' : 'tunnel-failed' };
  }
  const socket: Duplex = o.server.tls ? tlsConnect({ socket: tunnel as Socket, servername: o.server.host, ...(o.server.ca ? { ca: o.server.ca } : {}) }) : tunnel;
  const started = performance.now();
  try {
    const { body, firstByteMs } = await new Promise<{ body: Buffer; firstByteMs: number }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timeout')), left());
      const req = httpRequest(
        { method: 'GET', path: o.canary.path, headers: { host: `${o.server.host}:${o.server.port}`, connection: 'close' }, createConnection: () => socket as Socket },
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
    const seconds = (performance.now() - started) / 1000;
    const mbps = (body.length * 8) / seconds / 1e6;
    const measured = { latencyMs: Math.round(firstByteMs * 10) / 10, throughputMbps: Math.round(mbps * 10) / 10 };
    if (body.length !== o.canary.length || createHash('sha256').update(body).digest('hex') !== o.canary.sha256) {
      return { ok: false, status: 'bad-content', ...measured };
    }
    if (firstByteMs > o.maxLatencyMs) return { ok: false, status: 'slow', ...measured };
    if (mbps < o.minMbps) return { ok: false, status: 'low-throughput', ...measured };
    if (o.socksCanary && !o.server.tls && !(await fetchOverSocks(peer, o.ticket, o.server, o.socksCanary, left()))) return { ok: false, status: 'socks5-failed', ...measured };
    return { ok: true, status: 'ok', ...measured };
  } catch (err) {
    return { ok: false, status: (err as Error).message === 'timeout' ? 'timeout' : 'fetch-failed' };
  } finally {
    socket.destroy();
    tunnel.destroy();
  }
}

/** The same kind of fetch over the peer's SOCKS5 side, through socks-proxy-agent as clients use it. */
async function fetchOverSocks(peer: Upstream, ticket: string, server: Upstream, canary: CanaryResponse, timeoutMs: number): Promise<boolean> {
  const host = peer.host.includes(':') ? `[${peer.host}]` : peer.host;
  const agent = new SocksProxyAgent(`socks5://${TICKET_USERNAME}:${encodeURIComponent(ticket)}@${host}:${peer.port}`, { timeout: timeoutMs });
  const serverHost = server.host.includes(':') ? `[${server.host}]` : server.host;
  try {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
      httpGet(`http://${serverHost}:${server.port}${canary.path}`, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks));
        });
        res.on('error', reject);
      }).on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    return body.length === canary.length && createHash('sha256').update(body).digest('hex') === canary.sha256;
  } catch {
    return false;
  } finally {
    agent.destroy();
  }
}
