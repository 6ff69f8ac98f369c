import { randomInt } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { TicketCache } from '../../net/ticket-cache.js';
import type { ApiClient } from '../../net/api-client.js';
import type { IceTunnels } from '../../net/ice/ice-tunnels.js';
import { PeerTunnels } from '../../net/tunnel.js';
import type { CanaryResponse, PeerInfo, VerdictRequest } from '../../protocol/messages.js';

/** What the verifier asks of the server (probeRequests: to probe registered and reported peers at once). */
export type VerifyApi = Pick<ApiClient, 'peers' | 'ticket' | 'canary' | 'verdict'> & Partial<Pick<ApiClient, 'probeRequests'>>;
import { identityFingerprint } from '../../crypto/peer-identity.js';
import { checkPeerName, type PeerDns } from './dns-check.js';
import { probePeer, type ProbeOptions } from './probe.js';

export interface VerifierOptions {
  server: ProbeOptions['server'];
  concurrency: number;
  timeoutMs: number;
  maxLatencyMs: number;
  minMbps: number;
  /** Resolve each peer's name from the server's DNS first, and fail it unless the name gives its address. */
  dns?: PeerDns;
}

export interface VerdictReport extends VerdictRequest {
  peerId: string;
  host: string;
  port: number;
  state: PeerInfo['state'];
}

/**
 * Where to fetch a canary from a front of the server: its certificate must verify against the
 * system's roots or the server's CA, exactly as a browser would insist (a verifier that accepted a
 * peer's own certificate would let the peer read the probe).
 */
function originTarget(origin: string, serverCa: string | undefined): ProbeOptions['server'] {
  const url = new URL(origin);
  const tls = url.protocol === 'https:';
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || (tls ? 443 : 80)),
    tls,
    ...(tls && serverCa ? { ca: [...rootCertificates, serverCa].join('\n') } : {}),
  };
}

/** The items in a random order (Fisher-Yates). */
function shuffle<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** One verification pass over every live candidate and verified peer, verdicts posted as it goes. */
export class Verifier {
  readonly #api: VerifyApi;
  readonly #logger: Logger;
  readonly #o: VerifierOptions;
  readonly #tickets: TicketCache;

  /** Warm HTTP/2 connections to the peers (and WebRTC ones to peers behind a NAT), kept between probes as a get client keeps them. */
  #tunnels: PeerTunnels;
  readonly #ice: IceTunnels | undefined;

  /** `ice`: how peers behind a NAT are reached, as get reaches them (without it they fail `ice-unsupported`). */
  constructor(components: { api: VerifyApi; logger: Logger; clock: Clock; ice?: IceTunnels }, options: VerifierOptions) {
    this.#api = components.api;
    this.#ice = components.ice;
    this.#tunnels = this.#newTunnels();
    this.#logger = components.logger;
    this.#o = options;
    this.#tickets = new TicketCache({ clock: components.clock, issue: (r) => components.api.ticket(r) });
  }

  /** Ends the warm connections (a later probe opens new ones). */
  close(): void {
    this.#tunnels.close();
    this.#tunnels = this.#newTunnels();
  }

  #newTunnels(): PeerTunnels {
    return new PeerTunnels(this.#ice ? { ice: this.#ice } : {});
  }

  /** Probes every live candidate and verified peer; `on.start` hears how many, `on.verdict` each verdict. */
  async pass(on: { start?: (total: number) => void; verdict?: (r: VerdictReport) => void; signal?: AbortSignal } = {}): Promise<VerdictReport[]> {
    const peers = (await this.#api.peers()).filter((p) => p.state !== 'paused');
    on.start?.(peers.length);
    // A new order each pass: no peer can tell a probe by its place in a fixed sequence.
    const queue = shuffle(peers);
    const reports: VerdictReport[] = [];
    const worker = async () => {
      // Once stopped, no new probe starts (those under way finish and post their verdicts).
      for (let peer = queue.shift(); peer && !on.signal?.aborted; peer = queue.shift()) {
        const report = await this.probe(peer);
        if (!report) continue;
        reports.push(report);
        on.verdict?.(report);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, this.#o.concurrency) }, worker));
    return reports;
  }

  /** Probes one peer and posts the verdict; undefined when the server did not take it (the peer is gone). */
  async probe(peer: PeerInfo): Promise<VerdictReport | undefined> {
    const { ticket, over, socksCanary, canary } = await this.#plan(peer);
    const endpoint = {
      host: peer.host,
      port: peer.port,
      identityKey: peer.identityKey,
      ...(peer.plaintext ? { plaintext: true } : {}),
      ...(peer.sniName ? { sniName: peer.sniName } : {}),
      ...(peer.ice ? { ice: peer.ice } : {}),
    };
    // A peer reached over WebRTC has no name in the zone (it has no address to give out).
    const dnsStatus = this.#o.dns && !peer.ice ? await checkPeerName(this.#o.dns, peer, this.#o.timeoutMs) : undefined;
    // Fetched where the server says (another front of it), else from the server itself.
    const from = canary.origin ? originTarget(canary.origin, this.#o.server.ca) : this.#o.server;
    const { reason, ...verdict } = dnsStatus
      ? { ok: false, status: dnsStatus }
      : await probePeer(
          { ...endpoint, peerId: peer.peerId },
          { ticket, canary, ...(socksCanary ? { socksCanary } : {}), ...(over ? { over } : {}), tunnels: this.#tunnels, server: from, timeoutMs: this.#o.timeoutMs, maxLatencyMs: this.#o.maxLatencyMs, minMbps: this.#o.minMbps },
        );
    if (reason) this.#logger.info({ peerId: peer.peerId, status: verdict.status, reason }, 'probe failed');
    // How the probe went (direct, or over WebRTC between the NATs or through TURN), for operators.
    const path = dnsStatus ? undefined : this.#tunnels.path(endpoint);
    const posted = path ? { ...verdict, path } : verdict;
    try {
      const after = await this.#api.verdict(peer.peerId, posted);
      return { peerId: peer.peerId, host: peer.host, port: peer.port, state: after.state, ...posted };
    } catch (err) {
      this.#logger.warn({ code: (err as { code?: string }).code }, 'verdict not recorded (peer gone?)');
      return undefined;
    }
  }

  /**
   * What one probe presents, chosen so that no field tells it from a user's tunnel:
   * - the ticket: the one held for this peer (as a get client reuses its ticket) or, at random half
   *   the time, a fresh one under a new pseudonym, so that a peer keying on pseudonyms (serving
   *   those it saw probe before, or only new ones) is caught within a few probes;
   * - the transport: an HTTP/2 stream, as get uses. A candidate (no user knows it yet) is also
   *   checked over SOCKS5 inside TLS right after; a verified peer gets a SOCKS5 probe instead, on
   *   one probe in four, so that no SOCKS5 connection follows an HTTP/2 tunnel and marks it.
   */
  async #plan(peer: PeerInfo): Promise<{ ticket: string; canary: CanaryResponse; over?: 'socks5'; socksCanary?: CanaryResponse }> {
    const ticket = await this.#tickets.ticket(identityFingerprint(peer.identityKey), { renew: randomInt(2) === 0 });
    const canary = await this.#api.canary();
    // (A peer reached over WebRTC has no TLS port for SOCKS5: its tunnels are data channels.)
    if (!peer.protocols.includes('socks5') || peer.ice) return { ticket, canary };
    if (peer.state !== 'verified') return { ticket, canary, socksCanary: await this.#api.canary() };
    return randomInt(4) === 0 ? { ticket, canary, over: 'socks5' } : { ticket, canary };
  }
}
