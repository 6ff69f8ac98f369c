import { Level } from 'level';
import { BufferedWrites } from './buffered-writes.js';
import type { Keystore } from './keystore.js';
import { levelValueEncoding } from './keystore-values.js';
import { levelError } from './level-errors.js';

/** Keystore in LevelDB under the agent's home (one process at a time). Writes are fsynced. */
export class LevelKeystore implements Keystore {
  readonly #db: Level<string, unknown>;
  readonly #tx = new BufferedWrites();

  constructor(location: string) {
    this.#db = new Level<string, unknown>(location, { valueEncoding: levelValueEncoding });
  }

  async open(): Promise<void> {
    try {
      await this.#db.open();
    } catch (err) {
      throw levelError(err, 'open keystore');
    }
  }

  async close(): Promise<void> {
    try {
      await this.#db.close();
    } catch (err) {
      throw levelError(err, 'close keystore');
    }
  }

  async get<T>(key: string): Promise<T | undefined> {
    const buffered = this.#tx.read(key);
    if (buffered) return 'value' in buffered ? (buffered.value as T) : undefined;
    try {
      return (await this.#db.get(key)) as T | undefined;
    } catch (err) {
      throw levelError(err, 'keystore read');
    }
  }

  async put(key: string, value: unknown): Promise<void> {
    if (this.#tx.active) return this.#tx.record([{ type: 'put', key, value }]);
    try {
      await this.#db.put(key, value, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async del(key: string): Promise<void> {
    if (this.#tx.active) return this.#tx.record([{ type: 'del', key }]);
    try {
      await this.#db.del(key, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async batch(ops: Parameters<Keystore['batch']>[0]): Promise<void> {
    if (this.#tx.active) return this.#tx.record(ops);
    await this.#write(ops);
  }

  async #write(ops: Parameters<Keystore['batch']>[0]): Promise<void> {
    try {
      await this.#db.batch(ops as never, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async list<T>(prefix: string, options: { limit?: number } = {}): Promise<Array<[string, T]>> {
    try {
      const listed = (await this.#db.iterator({ gte: prefix, lt: `${prefix}\uffff`, limit: this.#tx.active ? -1 : (options.limit ?? -1) }).all()) as Array<[string, T]>;
      return this.#tx.overlay(prefix, listed, options.limit);
    } catch (err) {
      throw levelError(err, 'keystore read');
    }
  }

  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tx.run(fn, (ops) => this.#write(ops));
  }
}
