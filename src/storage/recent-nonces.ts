/** Width of the expiry buckets: entries leave a whole bucket at a time. */
const BUCKET_MS = 10_000;

/**
 * Request nonces seen recently, in process memory, for replay checks. A busy server sees thousands
 * a second and keeps each for minutes, so the layout matters: entries are grouped by expiry (10 s
 * buckets, dropped whole once past) and by scope (a device or a session), so each costs the nonce
 * string and a set slot (~70 bytes) instead of a full key string and its expiry time (~250 bytes,
 * measured; 180 MB at 4,000 requests/s, which made major GC pauses long).
 * A replay of a signed request carries the same time, hence the same expiry and bucket; but a
 * claim such as "one report per user a minute" is made again with a later expiry, so a claim looks in
 * every live bucket (a window of two minutes is thirteen of them).
 */
export class RecentNonces {
  readonly #buckets = new Map<number, Map<string, Set<string>>>();

  /** Records the nonce; false if it is already recorded (a replay). */
  claim(scope: string, nonce: string, expiresAt: number): boolean {
    for (const scopes of this.#buckets.values()) if (scopes.get(scope)?.has(nonce)) return false;
    const b = Math.floor(expiresAt / BUCKET_MS);
    let scopes = this.#buckets.get(b);
    if (!scopes) this.#buckets.set(b, (scopes = new Map()));
    let seen = scopes.get(scope);
    if (!seen) scopes.set(scope, (seen = new Set()));
    seen.add(nonce);
    return true;
  }

  /** Forgets every nonce that expired by `now` (a bucket goes once all of it has). */
  prune(now: number): void {
    for (const b of this.#buckets.keys()) if ((b + 1) * BUCKET_MS <= now) this.#buckets.delete(b);
  }
}
