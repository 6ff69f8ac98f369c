/** Serializes async critical sections per key (in this process). */
export class KeyedMutex {
  #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key);
    let release!: () => void;
    const next = new Promise<void>((resolve) => (release = resolve));
    // Uncontended (the common case on the send path): no chain to wait on.
    const tail = prev ? prev.then(() => next) : next;
    this.#tails.set(key, tail);
    if (prev) await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }

  /** Runs with several keys held, taken in sorted order so two callers never deadlock. */
  async runAll<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    if (keys.length === 1) return this.run(keys[0]!, fn);
    const sorted = [...new Set(keys)].sort();
    const step = (i: number): Promise<T> => (i === sorted.length ? fn() : this.run(sorted[i]!, () => step(i + 1)));
    return step(0);
  }
}
