import { Level } from 'level';
import type { Keystore } from './keystore.js';
import { levelError } from './level-errors.js';

/** Keystore in LevelDB under the agent's home (one process at a time). Writes are fsynced. */
export class LevelKeystore implements Keystore {
  readonly #db: Level<string, unknown>;

  constructor(location: string) {
    this.#db = new Level<string, unknown>(location, { valueEncoding: 'json' });
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
    try {
      return (await this.#db.get(key)) as T | undefined;
    } catch (err) {
      throw levelError(err, 'keystore read');
    }
  }

  async put(key: string, value: unknown): Promise<void> {
    try {
      await this.#db.put(key, value, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async del(key: string): Promise<void> {
    try {
      await this.#db.del(key, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async batch(ops: Parameters<Keystore['batch']>[0]): Promise<void> {
    try {
      await this.#db.batch(ops as never, { sync: true } as never);
    } catch (err) {
      throw levelError(err, 'keystore write');
    }
  }

  async list<T>(prefix: string, options: { limit?: number } = {}): Promise<Array<[string, T]>> {
    try {
      return (await this.#db.iterator({ gte: prefix, lt: `${prefix}\uffff`, limit: options.limit ?? -1 }).all()) as Array<[string, T]>;
    } catch (err) {
      throw levelError(err, 'keystore read');
    }
  }
}
