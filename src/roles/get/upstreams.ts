import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { TicketCache } from '../../net/ticket-cache.js';
import type { PeerEndpoint } from '../../net/tunnel.js';
import type { Advertisement, RoundRobinPeer } from '../../protocol/messages.js';
import type { TicketResponse } from '../../protocol/ticket.js';
import type { UpstreamSource } from './upstream-pool.js';

/** What get asks of the server for its upstreams. */
export interface UpstreamApi {
  roundRobin(): Promise<RoundRobinPeer[]>;
  ticket(request: { peer: string }): Promise<TicketResponse>;
  /** Reports a peer that failed while another worked (the server has a verifier probe it). */
  reportPeer?(identityKey: string, status: string): Promise<boolean>;
}

/** What changed at a refresh: peers that appeared or vanished, and whether the server answered. */
export interface UpstreamChange {
  added: PeerEndpoint[];
  removed: PeerEndpoint[];
  total: number;
  serverReachable: boolean;
  /** The server's reachability is not what it was at the last refresh. */
  serverChanged: boolean;
}

export interface UpstreamsComponents {
  api: UpstreamApi;
  clock: Clock;
  logger: Logger;
  ads(now: number): Promise<Advertisement[]>;
  /** Called after a refresh that changed something (not at the first, which `start` reports). */
  onChange?(change: UpstreamChange): void;
}

const peerKey = (p: PeerEndpoint) => (p.ice ? `ice:${p.ice.userId}.${p.ice.deviceId}:${p.identityKey}` : `${p.host}:${p.port}:${p.identityKey}`);

/** A peer is reported at most this often by one client. */
const REPORT_EVERY_MS = 60_000;


/**
 * Where get's upstreams come from: the server's verified round robin and the unexpired ads of
 * contacts, merged without duplicates; and one ticket per give peer (a ticket opens only the peer
 * it names), renewed before it expires.
 */
export class Upstreams implements UpstreamSource {
  readonly #c: UpstreamsComponents;
  #peers: PeerEndpoint[] = [];
  /** The round robin as last read. */
  #verified: RoundRobinPeer[] = [];
  #serverReachable = true;
  /** The first refresh (at start) is reported by the caller, not as a change. */
  #refreshed = false;
  readonly #tickets: TicketCache;
  /** When each peer (identity key) was last reported. */
  readonly #reported = new Map<string, number>();

  constructor(components: UpstreamsComponents) {
    this.#c = components;
    this.#tickets = new TicketCache({ clock: components.clock, issue: (r) => components.api.ticket(r) });
  }

  upstreams(): PeerEndpoint[] {
    return this.#peers;
  }

  ticket(peer: string): Promise<string> {
    return this.#tickets.ticket(peer);
  }

  report(peer: PeerEndpoint, status: string): void {
    const { api, clock, logger } = this.#c;
    if (!api.reportPeer) return;
    const now = clock.now();
    if (now - (this.#reported.get(peer.identityKey) ?? -Infinity) < REPORT_EVERY_MS) return;
    if (this.#reported.size >= 1000) this.#reported.clear();
    this.#reported.set(peer.identityKey, now);
    void api.reportPeer(peer.identityKey, status).then(
      (accepted) => logger.info({ status, accepted }, 'reported a failing give peer'),
      (err: unknown) => logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'could not report a failing give peer'),
    );
  }

  serverReachable(): boolean {
    return this.#serverReachable;
  }

  /**
   * Reads both lists again. The round robin being unavailable (the server down or blocked) keeps
   * the verified peers last read: they may well still work, and their tickets last an hour.
   */
  async refresh(): Promise<void> {
    const reachableBefore = this.#serverReachable;
    const verified = await this.#c.api.roundRobin().then(
      (peers) => {
        this.#serverReachable = true;
        return (this.#verified = peers);
      },
      (err: unknown) => {
        if (this.#serverReachable) this.#c.logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'round robin unavailable; keeping the peers last read');
        this.#serverReachable = false;
        return this.#verified;
      },
    );
    const ads = await this.#c.ads(this.#c.clock.now());
    const seen = new Set<string>();
    const before = this.#peers;
    this.#peers = [...verified, ...ads]
      .map(({ host, port, identityKey, sniName, ...rest }) => ({
        host,
        port,
        identityKey,
        ...(sniName ? { sniName } : {}),
        ...('plaintext' in rest && rest.plaintext ? { plaintext: true } : {}),
        ...('ice' in rest && rest.ice ? { ice: rest.ice } : {}),
      }))
      .filter((p) => !seen.has(peerKey(p)) && seen.add(peerKey(p)));
    this.#tell(before, reachableBefore);
  }

  #tell(before: PeerEndpoint[], reachableBefore: boolean): void {
    if (!this.#refreshed) {
      this.#refreshed = true;
      return;
    }
    const was = new Set(before.map(peerKey));
    const now = new Set(this.#peers.map(peerKey));
    const added = this.#peers.filter((p) => !was.has(peerKey(p)));
    const removed = before.filter((p) => !now.has(peerKey(p)));
    const serverChanged = reachableBefore !== this.#serverReachable;
    if (added.length || removed.length || serverChanged) this.#c.onChange?.({ added, removed, total: this.#peers.length, serverReachable: this.#serverReachable, serverChanged });
  }
}
