import type { Duplex } from 'node:stream';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { identityFingerprint } from '../../crypto/peer-identity.js';
import type { IceTunnels } from '../../net/ice/ice-tunnels.js';
import { PeerTunnels, type PeerEndpoint, type Upstream } from '../../net/tunnel.js';

export interface UpstreamSource {
  /** The give peers to use now (the verified round robin and contacts' ads), with the keys to pin. */
  upstreams(): PeerEndpoint[];
  /** A valid ticket for one give peer (by its fingerprint), renewed by the source before it expires. */
  ticket(peerFingerprint: string): Promise<string>;
  /** A peer failed a tunnel that another peer then opened: tell the server (it has a verifier probe it). */
  report?(peer: PeerEndpoint, status: string): void;
  /** Whether the server answered the last time the peers were read. */
  serverReachable?(): boolean;
}

/** Why get could not open a tunnel, as its local proxy tells the client (see failure-answers.ts). */
export type TunnelFailureCause = 'no-peers' | 'server-unreachable' | 'peers-failed' | 'destination-refused' | 'destination-unreachable';

/**
 * What the peers' answers say, all tried: a destination guard refused (403) before a destination
 * that could not be reached (502, 504), before peers that failed themselves.
 */
function causeOf(errors: readonly unknown[]): TunnelFailureCause {
  const statuses = errors.map((e) => (LanternError.is(e) ? e.details?.['peerStatus'] : undefined));
  if (statuses.includes(403)) return 'destination-refused';
  if (statuses.includes(502) || statuses.includes(504)) return 'destination-unreachable';
  return 'peers-failed';
}

/** What a failed tunnel says about the peer, as a report's status. */
function failureStatus(err: unknown): string {
  if (LanternError.is(err, 'LA_ERR_PEER_IDENTITY_MISMATCH')) return 'identity-mismatch';
  if (LanternError.is(err) && err.details?.['stage'] === 'tls') return 'tls-failed';
  return 'tunnel-failed';
}

/**
 * Opens tunnels through give peers in rotation, over TLS pinned to each peer's identity key and
 * multiplexed on one warm HTTP/2 connection per peer (PeerTunnels). When a peer cannot open the
 * tunnel (down, refusing, answering as nginx, or not the registered peer), the same request goes to
 * the next peer, invisibly to the client.
 */
export class UpstreamPool {
  readonly #source: UpstreamSource;
  readonly #logger: Logger;
  readonly #tunnels: PeerTunnels;
  #next = 0;
  readonly #fingerprints = new Map<string, string>();

  /** `ice`: how peers behind a NAT are reached (without it they are skipped as unreachable). */
  constructor(components: { source: UpstreamSource; logger: Logger; ice?: IceTunnels }) {
    this.#source = components.source;
    this.#logger = components.logger;
    this.#tunnels = new PeerTunnels(components.ice ? { ice: components.ice } : {});
  }

  /** How tunnels to this peer run: `direct`, or over WebRTC (`ice`, `turn`) once connected. */
  path(peer: PeerEndpoint): 'direct' | 'ice' | 'turn' | undefined {
    return this.#tunnels.path(peer);
  }

  async tunnel(target: Upstream): Promise<Duplex> {
    const peers = this.#source.upstreams();
    if (peers.length === 0) {
      const cause = this.#source.serverReachable?.() === false ? 'server-unreachable' : 'no-peers';
      throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', 'No give peer is known yet (no verified peer, no ad from a contact)', { details: { cause } });
    }
    const start = this.#next++ % peers.length;
    const errors: unknown[] = [];
    const failed: Array<{ peer: PeerEndpoint; status: string }> = [];
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[(start + i) % peers.length]!;
      try {
        const ticket = await this.#source.ticket(this.#fingerprint(peer.identityKey));
        const tunnel = await this.#tunnels.open(peer, ticket, target);
        // Another peer reached the destination: those before it failed on their own account.
        for (const f of failed) this.#source.report?.(f.peer, f.status);
        return tunnel;
      } catch (err) {
        errors.push(err);
        failed.push({ peer, status: failureStatus(err) });
        this.#logger.info({ code: (err as LanternError).code, reason: (err as Error).message }, 'give peer failed; trying the next one');
      }
    }
    const last = errors.at(-1);
    throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `${(last as Error | undefined)?.message ?? 'no tunnel'} (${peers.length} give peer(s) tried)`, {
      cause: last,
      details: { cause: causeOf(errors), tried: peers.length },
    });
  }

  /** A peer's fingerprint, hashed once per peer rather than once per tunnel (the peers are few). */
  #fingerprint(identityKey: string): string {
    let fingerprint = this.#fingerprints.get(identityKey);
    if (fingerprint === undefined) {
      if (this.#fingerprints.size >= 1024) this.#fingerprints.clear();
      fingerprint = identityFingerprint(identityKey);
      this.#fingerprints.set(identityKey, fingerprint);
    }
    return fingerprint;
  }

  /** Closes the warm connections to the peers. */
  close(): void {
    this.#tunnels.close();
  }
}
