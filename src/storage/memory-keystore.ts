import { LanternError } from '../core/errors.js';
import { BufferedWrites } from './buffered-writes.js';
import type { Keystore } from './keystore.js';
import { decodeValue, encodeValue } from './keystore-values.js';

/** A stored value decoded into memory of its own (bytes decode as a view of the stored buffer). */
function decodeCopy(stored: Buffer): unknown {
  const v = decodeValue(stored);
  return v instanceof Uint8Array ? v.slice() : v;
}

/** Keystore in memory, for tests: values held encoded as LevelKeystore holds them (a get returns a copy). */
export class MemoryKeystore implements Keystore {
  #data = new Map<string, Buffer>();
  #open = false;
  readonly #tx = new BufferedWrites();

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
    const buffered = this.#tx.read(key);
    if (buffered) return 'value' in buffered ? (buffered.value as T) : undefined;
    const v = this.#data.get(key);
    return v === undefined ? undefined : (decodeCopy(v) as T);
  }

  async put(key: string, value: unknown): Promise<void> {
    this.#check();
    if (this.#tx.active) return this.#tx.record([{ type: 'put', key, value }]);
    this.#data.set(key, encodeValue(value));
  }

  async del(key: string): Promise<void> {
    this.#check();
    if (this.#tx.active) return this.#tx.record([{ type: 'del', key }]);
    this.#data.delete(key);
  }

  async batch(ops: Parameters<Keystore['batch']>[0]): Promise<void> {
    this.#check();
    if (this.#tx.active) return this.#tx.record(ops);
    for (const op of ops) {
      if (op.type === 'put') this.#data.set(op.key, encodeValue(op.value));
      else this.#data.delete(op.key);
    }
  }

  async list<T>(prefix: string, options: { limit?: number } = {}): Promise<Array<[string, T]>> {
    this.#check();
    const keys = [...this.#data.keys()].filter((k) => k.startsWith(prefix)).sort();
    const listed = keys.map((k): [string, T] => [k, decodeCopy(this.#data.get(k)!) as T]);
    const out = this.#tx.overlay(prefix, listed, options.limit);
    return options.limit === undefined ? out : out.slice(0, options.limit);
  }

  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.#tx.run(fn, async (ops) => {
      for (const op of ops) {
        if (op.type === 'put') this.#data.set(op.key, encodeValue(op.value));
        else this.#data.delete(op.key);
      }
    });
  }
}
