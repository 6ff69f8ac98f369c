import type { BucketPolicy, TakeResult } from './server-store.js';

interface Bucket {
  tokens: number;
  updatedAt: number;
  policy: BucketPolicy;
}

const OK: TakeResult = Object.freeze({ ok: true });

/**
 * Token buckets kept in process memory, one per key (the backends that keep rate limits in one
 * process, and the UDP listeners). A take updates its bucket in place: on the send path it runs
 * twice per message, so it allocates nothing when the tokens are there. Past `maxKeys` the full
 * buckets (the same as absent ones) are dropped, and then if need be the least recently used.
 */
export class Buckets {
  readonly #buckets = new Map<string, Bucket>();

  constructor(readonly maxKeys = 100_000) {}

  take(key: string, cost: number, policy: BucketPolicy, now: number): TakeResult {
    let b = this.#buckets.get(key);
    if (!b) {
      b = { tokens: policy.capacity, updatedAt: now, policy };
      this.#buckets.set(key, b);
    }
    b.policy = policy;
    const elapsed = Math.max(0, now - b.updatedAt) / 1000;
    const tokens = Math.min(policy.capacity, b.tokens + elapsed * policy.refillPerSecond);
    b.updatedAt = now;
    b.tokens = tokens >= cost ? tokens - cost : tokens;
    // After the take, so that a new key's bucket is pruned only if it is still full.
    if (this.#buckets.size > this.maxKeys) this.#prune(now);
    if (tokens >= cost) return OK;
    const missing = cost - tokens;
    const retryAfterMs =
      cost > policy.capacity || policy.refillPerSecond <= 0 ? Number.MAX_SAFE_INTEGER : Math.ceil((missing / policy.refillPerSecond) * 1000);
    return { ok: false, retryAfterMs };
  }

  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Drops the full buckets; if that leaves more than nine tenths of `maxKeys` (keys all in use, as
   * a flood from many addresses makes them), the least recently used ones go too, down to that: a
   * prune then comes once per tenth of `maxKeys` new keys, not on every take, so a flood of new keys
   * costs each take O(log n) rather than a walk over the whole map. A dropped bucket in use lets
   * its key start full again.
   */
  #prune(now: number): void {
    for (const [key, b] of this.#buckets) {
      const elapsed = Math.max(0, now - b.updatedAt) / 1000;
      if (b.tokens + elapsed * b.policy.refillPerSecond >= b.policy.capacity) this.#buckets.delete(key);
    }
    const keep = Math.floor(this.maxKeys * 0.9);
    if (this.#buckets.size <= keep) return;
    const byUse = [...this.#buckets].sort(([, a], [, b]) => a.updatedAt - b.updatedAt);
    for (let i = 0; this.#buckets.size > keep; i++) this.#buckets.delete(byUse[i]![0]);
  }
}

/**
 * A per-key rate limit kept in this process (the UDP listeners: DNS and STUN answer per client
 * network): `perSecond` a key, bursts of twice that; 0 turns it off. Keys beyond `maxKeys` make
 * the full buckets go first, then the least recently used (see Buckets).
 */
export class LocalRateLimit {
  readonly #buckets: Buckets;
  readonly #policy: BucketPolicy;

  constructor(
    readonly perSecond: number,
    maxKeys = 10_000,
  ) {
    this.#buckets = new Buckets(maxKeys);
    this.#policy = { capacity: 2 * perSecond, refillPerSecond: perSecond };
  }

  /** Whether one more is allowed for `key` now (and counts it). */
  take(key: string, now: number): boolean {
    if (this.perSecond <= 0) return true;
    return this.#buckets.take(key, 1, this.#policy, now).ok;
  }
}
