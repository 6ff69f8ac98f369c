/** Width of the expiry buckets: entries leave a whole bucket at a time. */
const BUCKET_MS = 10_000;

/**
 * Request nonces seen recently, in process memory, for replay checks. A busy server sees thousands
 * a second and keeps each for minutes, so the layout matters: entries are grouped by expiry (10 s
 * buckets, dropped whole once past) and by scope (a device or a session), so each costs the nonce
 * string and a set slot (~70 bytes) instead of a full key string and its expiry time (~250 bytes,
 * measured; 180 MB at 4,000 requests/s, which made major GC pauses long).
 * A replay of a signed request carries the same time (it is signed), hence the same expiry and
 * bucket, so a claim looks in its own bucket only (ServerStore.claimNonce: a claim is scope, nonce
 * and expiry; it looked in all thirteen live buckets of a two-minute window while "one report per
 * user a minute" was a claim made again with a later expiry, which is now a token bucket).
 */
export class RecentNonces {
  readonly #buckets = new Map<number, Map<string, Set<string>>>();

  /** Records the nonce; false if it is already recorded (a replay). */
  claim(scope: string, nonce: string, expiresAt: number): boolean {
    const b = Math.floor(expiresAt / BUCKET_MS);
    let scopes = this.#buckets.get(b);
    if (!scopes) this.#buckets.set(b, (scopes = new Map()));
    let seen = scopes.get(scope);
    if (!seen) scopes.set(scope, (seen = new Set()));
    if (seen.has(nonce)) return false;
    seen.add(nonce);
    return true;
  }

  /** Forgets every nonce that expired by `now` (a bucket goes once all of it has). */
  prune(now: number): void {
    for (const b of this.#buckets.keys()) if ((b + 1) * BUCKET_MS <= now) this.#buckets.delete(b);
  }
}
