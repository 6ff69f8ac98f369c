import type { Clock } from '../core/clock.js';

/**
 * How long to wait between attempts: `initialMs`, then each wait `factor` times the last, at most
 * `maxMs`, each spread by ±`jitter` (a fraction) so that many clients do not retry in step.
 */
export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
  jitter?: number;
}

/** A server that went away: 0.5 s, 1 s, 2 s … up to 30 s. */
export const SERVER_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 30_000, factor: 2, jitter: 0.2 };

/** The waits of one run of attempts. */
export class Backoff {
  readonly #policy: BackoffPolicy;
  readonly #random: () => number;
  #last = 0;

  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.#policy = policy;
    this.#random = random;
  }

  /** The next wait, in ms. */
  next(): number {
    const { initialMs, maxMs, factor, jitter = 0 } = this.#policy;
    this.#last = this.#last === 0 ? initialMs : Math.min(maxMs, this.#last * factor);
    return Math.round(this.#last * (1 + jitter * (2 * this.#random() - 1)));
  }

  /** After a success: the next failure waits `initialMs` again. */
  reset(): void {
    this.#last = 0;
  }
}

/** Waits `ms` on the clock; resolves false at once if `signal` aborts first (true otherwise). */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = () => {
      clock.clearTimeout(timer);
      resolve(false);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Runs `work` until it succeeds, an error is not `retryable`, or `attempts` are used up (then the
 * last error is thrown), waiting by `policy` between attempts.
 */
export async function retry<T>(
  work: (attempt: number) => Promise<T>,
  options: { clock: Clock; attempts: number; policy: BackoffPolicy; retryable(err: unknown): boolean; signal?: AbortSignal },
): Promise<T> {
  const backoff = new Backoff(options.policy);
  for (let attempt = 1; ; attempt++) {
    try {
      return await work(attempt);
    } catch (err) {
      if (attempt >= options.attempts || !options.retryable(err)) throw err;
      if (!(await sleep(options.clock, backoff.next(), options.signal))) throw err;
    }
  }
}
