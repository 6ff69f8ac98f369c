import { openRedis, type RedisConnection, type RedisEndpoint } from './redis-client.js';

/** What a claim got: the id, or not (another token holds it, or the broker is full). */
export type ClaimResult = 'claimed' | 'taken' | 'full';

/**
 * Which PeerJS ids are taken, shared by every server instance: ID-TAKEN, the concurrent-client
 * limit and `/peers` hold across them. A claim lives `ttlMs` unless renewed (on HEARTBEAT), so a
 * crashed instance's ids come free.
 */
export interface PeerjsDirectory {
  /**
   * Takes `id` for `token`, or renews it if `token` holds it; 'taken' when another token holds it,
   * 'full' when `limit` ids are held across the instances (a renewal is never refused).
   */
  claim(id: string, token: string, ttlMs: number, limit: number): Promise<ClaimResult>;
  /** Frees `id` if `token` holds it. */
  release(id: string, token: string): Promise<void>;
  /** The ids held, across the instances. */
  list(): Promise<string[]>;
  close(): Promise<void>;
}

// KEYS: the id's claim, the index of claims (id → expiry, ms of the Redis clock). Both carry the
// hash tag {peerjs}, so the script runs on one slot of a Redis Cluster.
// ARGV: token, ttl ms, limit, id. Returns 1 (claimed), 0 (taken), -1 (full).
const CLAIM = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
if not cur then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[4])
return 1
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
end
return 1
`;

const LIST = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`;

export class RedisPeerjsDirectory implements PeerjsDirectory {
  readonly #endpoint: RedisEndpoint;
  #redis!: RedisConnection;
  readonly #prefix: string;

  constructor(options: RedisEndpoint & { prefix?: string }) {
    this.#endpoint = options;
    this.#prefix = `${options.prefix ?? 'la:'}peerjs:{peerjs}:`;
  }

  async open(): Promise<void> {
    this.#redis = await openRedis(this.#endpoint, { lazyConnect: true, maxRetriesPerRequest: 2 });
    this.#redis.on('error', () => undefined);
    this.#redis.defineCommand('claimId', { lua: CLAIM, numberOfKeys: 2 });
    this.#redis.defineCommand('releaseId', { lua: RELEASE, numberOfKeys: 2 });
    this.#redis.defineCommand('listIds', { lua: LIST, numberOfKeys: 1 });
  }

  async claim(id: string, token: string, ttlMs: number, limit: number): Promise<ClaimResult> {
    const r = this.#redis as unknown as { claimId(key: string, index: string, token: string, ttl: number, limit: number, id: string): Promise<number> };
    const out = await r.claimId(`${this.#prefix}id:${id}`, `${this.#prefix}ids`, token, ttlMs, limit, id);
    return out === 1 ? 'claimed' : out === -1 ? 'full' : 'taken';
  }

  async release(id: string, token: string): Promise<void> {
    const r = this.#redis as unknown as { releaseId(key: string, index: string, token: string, id: string): Promise<number> };
    await r.releaseId(`${this.#prefix}id:${id}`, `${this.#prefix}ids`, token, id);
  }

  async list(): Promise<string[]> {
    const r = this.#redis as unknown as { listIds(index: string): Promise<string[]> };
    return r.listIds(`${this.#prefix}ids`);
  }

  async close(): Promise<void> {
    if (!this.#redis) return;
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
