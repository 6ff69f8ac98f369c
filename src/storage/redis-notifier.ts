import { LanternError } from '../core/errors.js';
import { isCluster, openRedis, type RedisConnection, type RedisEndpoint } from './redis-client.js';
import type { Notifier } from './server-store.js';

/** The Redis channel of a notifier channel (a store that publishes wake-ups itself uses the same names). */
export function redisChannelName(channel: string, prefix = 'la:'): string {
  return `${prefix}ch:${channel}`;
}

/**
 * Wake-ups across server processes through Redis pub/sub: a send on one instance wakes the
 * long-poll another instance holds; a newer poll releases an older one wherever it is held. One
 * connection publishes, one subscribes (a channel is subscribed while a listener wants it).
 *
 * On a Redis Cluster it uses sharded pub/sub (SSUBSCRIBE, SPUBLISH; Redis 7): a message goes to
 * the shard that owns its channel's slot, not to every node, and a publish counts the listeners
 * of that channel wherever they are (classic PUBLISH in a cluster counts only those on the node it
 * reached). A device's channel carries its user's hash tag, so the store's scripts publish a
 * wake-up on the slot of the keys they change.
 */
export class RedisNotifier implements Notifier {
  readonly #endpoint: RedisEndpoint;
  #pub!: RedisConnection;
  #sub!: RedisConnection;
  #sharded = false;
  readonly #prefix: string;
  readonly #listeners = new Map<string, Set<(message: string) => void>>();
  /** Channels without listeners stay subscribed this long: a device polls again right after an answer. */
  readonly #lingerMs: number;
  readonly #lingering = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(options: RedisEndpoint & { prefix?: string; lingerMs?: number }) {
    this.#prefix = redisChannelName('', options.prefix);
    this.#lingerMs = options.lingerMs ?? 30_000;
    this.#endpoint = options;
  }

  async open(): Promise<void> {
    const opened = await Promise.allSettled([
      openRedis(this.#endpoint, { lazyConnect: true, maxRetriesPerRequest: 2 }),
      openRedis(this.#endpoint, { lazyConnect: true }, { shardedSubscribers: true }),
    ]);
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) {
      for (const r of opened) if (r.status === 'fulfilled') r.value.disconnect();
      throw failed.reason;
    }
    [this.#pub, this.#sub] = opened.map((r) => (r as PromiseFulfilledResult<RedisConnection>).value) as [RedisConnection, RedisConnection];
    this.#sharded = isCluster(this.#sub);
    for (const r of [this.#pub, this.#sub]) r.on('error', () => undefined);
    this.#sub.on(this.#sharded ? 'smessage' : 'message', (channel: string, message: string) => {
      for (const listener of this.#listeners.get(channel) ?? []) listener(message);
    });
  }

  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    const key = this.#prefix + channel;
    const lingering = this.#lingering.get(key);
    if (lingering) {
      clearTimeout(lingering);
      this.#lingering.delete(key);
    }
    let set = this.#listeners.get(key);
    if (!set) {
      this.#listeners.set(key, (set = new Set()));
      await (this.#sharded ? this.#sub.ssubscribe(key) : this.#sub.subscribe(key));
    }
    set.add(listener);
    const mine = set;
    return async () => {
      mine.delete(listener);
      if (mine.size > 0 || this.#listeners.get(key) !== mine || this.#lingering.has(key)) return;
      const timer = setTimeout(() => {
        this.#lingering.delete(key);
        if (this.#listeners.get(key) !== mine || mine.size > 0) return;
        this.#listeners.delete(key);
        (this.#sharded ? this.#sub.sunsubscribe(key) : this.#sub.unsubscribe(key)).catch(() => undefined);
      }, this.#lingerMs);
      timer.unref();
      this.#lingering.set(key, timer);
    };
  }

  /** Answers how many subscribed connections got it (Redis counts connections, not listeners). */
  async publish(channel: string, message: string): Promise<number> {
    try {
      return Number(await (this.#sharded ? this.#pub.spublish(this.#prefix + channel, message) : this.#pub.publish(this.#prefix + channel, message)));
    } catch (err) {
      throw new LanternError('LA_ERR_STORE_UNAVAILABLE', `Redis: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    for (const timer of this.#lingering.values()) clearTimeout(timer);
    this.#lingering.clear();
    this.#listeners.clear();
    if (!this.#pub) return;
    await Promise.all([this.#pub, this.#sub].map((r) => r.quit().catch(() => r.disconnect())));
  }
}
