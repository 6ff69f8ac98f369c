import type { Clock, ClockTimer } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import type { PeerRecord, PeerRegistry } from '../../storage/server-store.js';
import { currentState } from './peer-admission.js';
import type { ServerMetrics } from './metrics.js';

export interface RotationMonitorOptions {
  /** Warn when fewer verified peers than this are in the round robin (0: never). */
  minRotation: number;
  checkEveryMs: number;
  /** While below, the warning is repeated this often. */
  repeatWarningMs: number;
  /** Verified peers without a pass this fresh are out of the round robin; no verdict for this long is warned about. */
  verdictTtlMs: number;
  verifierQuorum: number;
}

/**
 * Watches the size of the verified round robin: keeps the peer gauges current and logs a warning
 * when it falls below --min-rotation (again every `repeatWarningMs` while it stays there), and a
 * line when it recovers.
 */
export class RotationMonitor implements Startable {
  readonly #c: { store: Pick<PeerRegistry, 'listPeers'>; clock: Clock; logger: Logger; metrics: ServerMetrics };
  readonly #faults: FaultBoundary;
  readonly #o: RotationMonitorOptions;
  #timer: ClockTimer | undefined;
  #poked: ClockTimer | undefined;
  #below = false;
  #warnedAt = -Infinity;
  #silent = false;
  #silenceWarnedAt = -Infinity;
  #startedAt: number | undefined;
  /** The newest pass on a live peer (or the start): the age gauge is read from it when scraped. */
  #lastPassAt: number | undefined;
  #stopped = false;

  constructor(components: { store: Pick<PeerRegistry, 'listPeers'>; clock: Clock; logger: Logger; metrics: ServerMetrics; faults?: FaultBoundary }, options: RotationMonitorOptions) {
    this.#c = components;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#o = options;
  }

  async start(): Promise<void> {
    this.#startedAt = this.#c.clock.now();
    this.#c.metrics.roundRobinMin.set(this.#o.minRotation);
    this.#c.metrics.passAge(() => Math.max(0, (this.#c.clock.now() - (this.#lastPassAt ?? this.#startedAt ?? this.#c.clock.now())) / 1000));
    await this.check();
    this.#schedule();
  }

  #schedule(): void {
    if (this.#stopped) return;
    // A faulted check is dropped; the next one is scheduled all the same.
    this.#timer = this.#c.clock.setTimeout(
      this.#faults.wrap('timer', () => this.check().finally(() => this.#schedule())),
      this.#o.checkEveryMs,
    );
    this.#timer.unref?.();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) this.#c.clock.clearTimeout(this.#timer);
    if (this.#poked) this.#c.clock.clearTimeout(this.#poked);
  }

  /**
   * A verdict was posted: a pass counts for the age gauge at once (a scrape right after it must not
   * read the age of the pass before), and the registry is looked at again soon.
   */
  verdict(peer: PeerRecord): void {
    if (peer.lastVerdict?.ok) this.#lastPassAt = Math.max(this.#lastPassAt ?? 0, peer.lastVerdict.at);
    this.poke();
  }

  /** Something changed (a verdict): look again soon, once for a burst of changes. */
  poke(): void {
    if (this.#poked || this.#stopped) return;
    this.#poked = this.#c.clock.setTimeout(
      this.#faults.wrap('timer', () => {
        this.#poked = undefined;
        return this.check();
      }),
      250,
    );
    this.#poked.unref?.();
  }

  /**
   * The verifiers' pulse, from the verdicts on live peers: the age of the newest pass (a gauge), and
   * a warning (repeated while it lasts) when peers are registered but no verdict at all is fresher
   * than --verdict-ttl, which is when their verification goes stale.
   */
  #checkVerifiers(peers: readonly PeerRecord[], now: number): void {
    const since = this.#startedAt ?? now;
    const newest = (ok?: boolean) => Math.max(since, ...peers.flatMap((p) => (p.lastVerdict && (ok === undefined || p.lastVerdict.ok === ok) ? [p.lastVerdict.at] : [])));
    this.#lastPassAt = newest(true);
    const silentMs = now - newest();
    const silent = peers.length > 0 && silentMs > this.#o.verdictTtlMs;
    if (silent && (!this.#silent || now - this.#silenceWarnedAt >= this.#o.repeatWarningMs)) {
      this.#c.logger.warn({ silentSeconds: Math.round(silentMs / 1000), verdictTtlSeconds: this.#o.verdictTtlMs / 1000, peers: peers.length }, 'no verifier has reported for longer than --verdict-ttl; verified peers leave the round robin');
      this.#silenceWarnedAt = now;
    } else if (!silent && this.#silent) {
      this.#c.logger.info({}, 'verifiers report again');
    }
    this.#silent = silent;
  }

  /** One look at the registry (run on a timer, and after changes such as verdicts). */
  async check(): Promise<void> {
    try {
      const now = this.#c.clock.now();
      const registered = await this.#c.store.listPeers(now);
      this.#checkVerifiers(registered, now);
      const peers = registered.map((p) => currentState(p, now, this.#o));
      const count = { candidate: 0, verified: 0, paused: 0 };
      for (const p of peers) count[p.state]++;
      for (const [state, n] of Object.entries(count)) this.#c.metrics.peers.set({ state }, n);
      this.#c.metrics.roundRobinPeers.set(count.verified);
      const below = count.verified < this.#o.minRotation;
      this.#c.metrics.roundRobinBelowMin.set(below ? 1 : 0);
      if (below && (!this.#below || now - this.#warnedAt >= this.#o.repeatWarningMs)) {
        this.#c.logger.warn({ verified: count.verified, minRotation: this.#o.minRotation, candidates: count.candidate }, 'round robin below --min-rotation');
        this.#warnedAt = now;
      } else if (!below && this.#below) {
        this.#c.logger.info({ verified: count.verified, minRotation: this.#o.minRotation }, 'round robin back at --min-rotation');
      }
      this.#below = below;
    } catch (err) {
      this.#c.logger.error({ err }, 'rotation check failed');
    }
  }
}
