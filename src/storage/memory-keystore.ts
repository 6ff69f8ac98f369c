import { LanternError } from '../core/errors.js';
import type { Keystore } from './keystore.js';

/** Keystore in memory, for tests. */
export class MemoryKeystore implements Keystore {
  #data = new Map<string, string>();
  #open = false;

  async open(): Promise<void> {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  #check(): void {
    if (!this.#open) throw new LanternError('LA_ERR_STORE_UNAVAILABLE', 'Keystore is closed');
  }

  async get<T>(key: string): Promise<T | undefined> {
    this.#check();
    const v = this.#data.get(key);
    return v === undefined ? undefined : (JSON.parse(v) as T);
  }

  async put(key: string, value: unknown): Promise<void> {
    this.#check();
    this.#data.set(key, JSON.stringify(value));
  }

  async del(key: string): Promise<void> {
    this.#check();
    this.#data.delete(key);
  }

  async batch(ops: Parameters<Keystore['batch']>[0]): Promise<void> {
    this.#check();
    for (const op of ops) {
      if (op.type === 'put') this.#data.set(op.key, JSON.stringify(op.value));
      else this.#data.delete(op.key);
    }
  }

  async list<T>(prefix: string, options: { limit?: number } = {}): Promise<Array<[string, T]>> {
    this.#check();
    const keys = [...this.#data.keys()].filter((k) => k.startsWith(prefix)).sort();
    return keys.slice(0, options.limit ?? keys.length).map((k) => [k, JSON.parse(this.#data.get(k)!) as T]);
  }
}
