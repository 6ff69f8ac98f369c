import type { Clock, ClockTimer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { Notifier } from '../../storage/server-store.js';

/** The notifier channel probe requests travel on (every server process hears every request). */
export const PROBE_CHANNEL = 'verify:probe';

/** How long a request waits for a verifier to collect it. */
const KEEP_MS = 120_000;
/** Most requests kept (a flood of registrations does not grow memory). */
const MAX_KEPT = 10_000;

/**
 * Peers to probe now rather than at the next pass: a peer that registered (a candidate), or one that
 * users reported. Requests go out on the notifier, so a verifier long-polling any server process
 * hears those made on every process; each process keeps the last two minutes of them, so a verifier
 * between two polls misses none (it asks for those after the server time its last answer carried).
 */
export class ProbeRequests {
  readonly #c: { notifier: Notifier; clock: Clock; logger: Logger };
  readonly #recent: Array<{ at: number; peerId: string }> = [];
  readonly #waiters = new Set<() => void>();
  #unsubscribe: (() => Promise<void>) | undefined;

  constructor(components: { notifier: Notifier; clock: Clock; logger: Logger }) {
    this.#c = components;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#c.notifier.subscribe(PROBE_CHANNEL, (peerId) => {
      const now = this.#c.clock.now();
      this.#recent.push({ at: now, peerId });
      while (this.#recent.length > MAX_KEPT || (this.#recent[0] && this.#recent[0].at < now - KEEP_MS)) this.#recent.shift();
      for (const wake of [...this.#waiters]) wake();
    });
  }

  async stop(): Promise<void> {
    for (const wake of [...this.#waiters]) wake();
    await this.#unsubscribe?.().catch((err: unknown) => this.#c.logger.warn({ err }, 'unsubscribe failed'));
  }

  /** Asks the verifiers (listening on any process) to probe this peer now. */
  async request(peerId: string): Promise<void> {
    await this.#c.notifier.publish(PROBE_CHANNEL, peerId);
  }

  /**
   * The peers asked for after `since` (server time; undefined: from now on), at once if there are
   * any, else once one is asked for or after `waitMs`. `now` is the time to pass as the next `since`.
   */
  async since(since: number | undefined, waitMs: number, signal: AbortSignal): Promise<{ now: number; peerIds: string[] }> {
    const from = since ?? this.#c.clock.now();
    const collect = () => {
      const now = this.#c.clock.now();
      return { now, peerIds: [...new Set(this.#recent.filter((r) => r.at >= from).map((r) => r.peerId))] };
    };
    const ready = collect();
    if (ready.peerIds.length > 0 || waitMs <= 0 || signal.aborted) return ready;
    await new Promise<void>((resolve) => {
      let timer: ClockTimer | undefined;
      const done = () => {
        this.#waiters.delete(done);
        if (timer) this.#c.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal.addEventListener('abort', done, { once: true });
      timer = this.#c.clock.setTimeout(done, waitMs);
      timer.unref?.();
    });
    return collect();
  }
}
