import type { Redis } from 'ioredis';
import { LanternError } from '../core/errors.js';
import { connectRedis, redisClient, type RedisEndpoint } from './redis-client.js';
import type { Notifier } from './server-store.js';

/** The Redis channel of a notifier channel (a store that publishes wake-ups itself uses the same names). */
export function redisChannelName(channel: string, prefix = 'la:'): string {
  return `${prefix}ch:${channel}`;
}

/**
 * Wake-ups across server processes through Redis pub/sub: a send on one instance wakes the
 * long-poll another instance holds; a newer poll releases an older one wherever it is held. One
 * connection publishes, one subscribes (a channel is subscribed while a listener wants it).
 */
export class RedisNotifier implements Notifier {
  readonly #pub: Redis;
  readonly #sub: Redis;
  readonly #prefix: string;
  readonly #listeners = new Map<string, Set<(message: string) => void>>();
  /** Channels without listeners stay subscribed this long: a device polls again right after an answer. */
  readonly #lingerMs: number;
  readonly #lingering = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(options: RedisEndpoint & { prefix?: string; lingerMs?: number }) {
    this.#prefix = redisChannelName('', options.prefix);
    this.#lingerMs = options.lingerMs ?? 30_000;
    this.#pub = redisClient(options, { lazyConnect: true, maxRetriesPerRequest: 2 });
    this.#sub = redisClient(options, { lazyConnect: true });
    for (const r of [this.#pub, this.#sub]) r.on('error', () => undefined);
    this.#sub.on('message', (channel: string, message: string) => {
      for (const listener of this.#listeners.get(channel) ?? []) listener(message);
    });
  }

  async open(): Promise<void> {
    const opened = await Promise.allSettled([connectRedis(this.#pub), connectRedis(this.#sub)]);
    const failed = opened.find((r) => r.status === 'rejected');
    if (failed) {
      for (const r of [this.#pub, this.#sub]) r.disconnect();
      throw failed.reason;
    }
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
      await this.#sub.subscribe(key);
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
        this.#sub.unsubscribe(key).catch(() => undefined);
      }, this.#lingerMs);
      timer.unref();
      this.#lingering.set(key, timer);
    };
  }

  /** Answers how many subscribed connections got it (Redis counts connections, not listeners). */
  async publish(channel: string, message: string): Promise<number> {
    try {
      return await this.#pub.publish(this.#prefix + channel, message);
    } catch (err) {
      throw new LanternError('LA_ERR_STORE_UNAVAILABLE', `Redis: ${(err as Error).message}`, { cause: err });
    }
  }

  async close(): Promise<void> {
    for (const timer of this.#lingering.values()) clearTimeout(timer);
    this.#lingering.clear();
    this.#listeners.clear();
    await Promise.all([this.#pub, this.#sub].map((r) => r.quit().catch(() => r.disconnect())));
  }
}
