import type { Clock, ClockTimer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { Notifier } from '../../storage/server-store.js';

/** The notifier channel probe requests travel on (every server process hears every request). */
export const PROBE_CHANNEL = 'verify:probe';
/** The channel on which a new verdict about a peer is announced (its give peer is waiting for it). */
export const VERDICT_CHANNEL = 'peer:verdict';

/** How long a signal is kept for a waiter to collect it. */
const KEEP_MS = 120_000;
/** Most signals kept (a flood of registrations does not grow memory). */
const MAX_KEPT = 10_000;

/**
 * Peer ids signalled on one notifier channel, for long-polls on any server process to collect:
 * - probe requests (PROBE_CHANNEL): peers to probe now rather than at the next pass, a peer that
 *   registered (a candidate) or one that users reported, collected by verifiers;
 * - verdicts (VERDICT_CHANNEL): a verifier has judged the peer, collected by that give peer, which
 *   then shows its new state at once.
 * Signals go out on the notifier, so a long-poll on any process hears those made on every process;
 * each process keeps the last two minutes of them, so a waiter between two polls misses none (it
 * asks for those after the server time its last answer carried).
 */
export class PeerSignals {
  readonly #c: { notifier: Notifier; clock: Clock; logger: Logger };
  readonly #channel: string;
  readonly #recent: Array<{ at: number; peerId: string }> = [];
  readonly #waiters = new Set<() => void>();
  /** Waiters for one peer (until): woken by that peer's signal only, not by every signal. */
  readonly #byPeer = new Map<string, Set<() => void>>();
  #unsubscribe: (() => Promise<void>) | undefined;

  constructor(components: { notifier: Notifier; clock: Clock; logger: Logger }, channel: string) {
    this.#c = components;
    this.#channel = channel;
  }

  async start(): Promise<void> {
    this.#unsubscribe = await this.#c.notifier.subscribe(this.#channel, (peerId) => {
      const now = this.#c.clock.now();
      this.#recent.push({ at: now, peerId });
      while (this.#recent.length > MAX_KEPT || (this.#recent[0] && this.#recent[0].at < now - KEEP_MS)) this.#recent.shift();
      for (const wake of [...this.#waiters]) wake();
      for (const wake of [...(this.#byPeer.get(peerId) ?? [])]) wake();
    });
  }

  async stop(): Promise<void> {
    for (const wake of [...this.#waiters, ...[...this.#byPeer.values()].flatMap((set) => [...set])]) wake();
    await this.#unsubscribe?.().catch((err: unknown) => this.#c.logger.warn({ err }, 'unsubscribe failed'));
  }

  /** Signals this peer to the waiters on every server instance. */
  async signal(peerId: string): Promise<void> {
    await this.#c.notifier.publish(this.#channel, peerId);
  }

  /**
   * The peers signalled after `since` (server time; undefined: from now on), at once if there are
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
    return this.#wait(waitMs, signal).then(collect);
  }

  /** Resolves when a waiter in `set` is woken, after `waitMs`, or when `signal` aborts. */
  #wait(waitMs: number, signal: AbortSignal, set: Set<() => void> = this.#waiters): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: ClockTimer | undefined;
      const done = () => {
        set.delete(done);
        if (timer) this.#c.clock.clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      set.add(done);
      signal.addEventListener('abort', done, { once: true });
      timer = this.#c.clock.setTimeout(done, waitMs);
      timer.unref?.();
    });
  }

  /**
   * Waits until this peer is signalled after `since` (server time), or `waitMs` passes, or `signal`
   * aborts. Only this peer's signals wake it: thousands of give peers waiting for their verdicts
   * cost nothing per verdict but the one that is theirs.
   */
  async until(peerId: string, since: number, waitMs: number, signal: AbortSignal): Promise<void> {
    if (this.#recent.some((r) => r.peerId === peerId && r.at >= since) || waitMs <= 0 || signal.aborted) return;
    let set = this.#byPeer.get(peerId);
    if (!set) this.#byPeer.set(peerId, (set = new Set()));
    try {
      await this.#wait(waitMs, signal, set);
    } finally {
      if (set.size === 0) this.#byPeer.delete(peerId);
    }
  }
}
