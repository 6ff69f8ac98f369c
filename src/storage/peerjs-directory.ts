import { openRedis, type RedisConnection, type RedisEndpoint } from './redis-client.js';

/**
 * Which PeerJS ids are taken, shared by every server instance (so ID-TAKEN holds across them). A
 * claim lives `ttlMs` unless renewed (on HEARTBEAT), so a crashed instance's ids come free.
 */
export interface PeerjsDirectory {
  /** Takes `id` for `token`, or renews it if `token` holds it; false when another token holds it. */
  claim(id: string, token: string, ttlMs: number): Promise<boolean>;
  /** Frees `id` if `token` holds it. */
  release(id: string, token: string): Promise<void>;
  close(): Promise<void>;
}

const CLAIM = `
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
`;

export class RedisPeerjsDirectory implements PeerjsDirectory {
  readonly #endpoint: RedisEndpoint;
  #redis!: RedisConnection;
  readonly #prefix: string;

  constructor(options: RedisEndpoint & { prefix?: string }) {
    this.#endpoint = options;
    this.#prefix = `${options.prefix ?? 'la:'}peerjs:`;
  }

  async open(): Promise<void> {
    this.#redis = await openRedis(this.#endpoint, { lazyConnect: true, maxRetriesPerRequest: 2 });
    this.#redis.on('error', () => undefined);
    this.#redis.defineCommand('claimId', { lua: CLAIM, numberOfKeys: 1 });
    this.#redis.defineCommand('releaseId', { lua: RELEASE, numberOfKeys: 1 });
  }

  async claim(id: string, token: string, ttlMs: number): Promise<boolean> {
    const r = this.#redis as unknown as { claimId(key: string, token: string, ttl: number): Promise<number> };
    return (await r.claimId(this.#prefix + id, token, ttlMs)) === 1;
  }

  async release(id: string, token: string): Promise<void> {
    const r = this.#redis as unknown as { releaseId(key: string, token: string): Promise<number> };
    await r.releaseId(this.#prefix + id, token);
  }

  async close(): Promise<void> {
    if (!this.#redis) return;
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }
}
