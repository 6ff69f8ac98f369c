import type { BucketPolicy, TakeResult } from './server-store.js';

export interface BucketState {
  tokens: number;
  updatedAt: number;
}

/** Pure token-bucket step shared by the backends that keep buckets in process memory. */
export function takeFromBucket(
  state: BucketState | undefined,
  cost: number,
  policy: BucketPolicy,
  now: number,
): { state: BucketState; result: TakeResult } {
  const prev = state ?? { tokens: policy.capacity, updatedAt: now };
  const elapsed = Math.max(0, now - prev.updatedAt) / 1000;
  const tokens = Math.min(policy.capacity, prev.tokens + elapsed * policy.refillPerSecond);
  if (tokens >= cost) return { state: { tokens: tokens - cost, updatedAt: now }, result: { ok: true } };
  const missing = cost - tokens;
  const retryAfterMs =
    cost > policy.capacity || policy.refillPerSecond <= 0
      ? Number.MAX_SAFE_INTEGER
      : Math.ceil((missing / policy.refillPerSecond) * 1000);
  return { state: { tokens, updatedAt: now }, result: { ok: false, retryAfterMs } };
}

/** Bucket maps grow with distinct keys; drop full buckets (equivalent to absent ones) now and then. */
export function pruneFullBuckets(buckets: Map<string, BucketState & { policy: BucketPolicy }>, now: number): void {
  for (const [key, b] of buckets) {
    const elapsed = Math.max(0, now - b.updatedAt) / 1000;
    if (b.tokens + elapsed * b.policy.refillPerSecond >= b.policy.capacity) buckets.delete(key);
  }
}

/**
 * A per-key rate limit kept in this process (the UDP listeners: DNS and STUN answer per client
 * network): `perSecond` a key, bursts of twice that; 0 turns it off. Keys beyond `maxKeys` make
 * the full buckets go first.
 */
export class LocalRateLimit {
  readonly #buckets = new Map<string, BucketState & { policy: BucketPolicy }>();
  readonly #policy: BucketPolicy;

  constructor(
    readonly perSecond: number,
    readonly maxKeys = 10_000,
  ) {
    this.#policy = { capacity: 2 * perSecond, refillPerSecond: perSecond };
  }

  /** Whether one more is allowed for `key` now (and counts it). */
  take(key: string, now: number): boolean {
    if (this.perSecond <= 0) return true;
    const { state, result } = takeFromBucket(this.#buckets.get(key), 1, this.#policy, now);
    this.#buckets.set(key, { ...state, policy: this.#policy });
    if (this.#buckets.size > this.maxKeys) pruneFullBuckets(this.#buckets, now);
    return result.ok;
  }
}
