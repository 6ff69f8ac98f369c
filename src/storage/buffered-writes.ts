import type { Keystore } from './keystore.js';

type Op = { type: 'put'; key: string; value: unknown } | { type: 'del'; key: string };

/**
 * Write buffering behind `Keystore.transaction`: while a transaction runs, writes go to a buffer
 * that reads see, and at its end they are written in one atomic batch (or dropped if it throws).
 * Backends hold one and route their calls through it.
 */
export class BufferedWrites {
  #pending: Map<string, Op> | undefined;
  #tail: Promise<unknown> = Promise.resolve();

  get active(): boolean {
    return this.#pending !== undefined;
  }

  /** A buffered value: `{ value }`, `{ deleted: true }`, or undefined when not buffered. */
  read(key: string): { value: unknown } | { deleted: true } | undefined {
    const op = this.#pending?.get(key);
    if (!op) return undefined;
    return op.type === 'put' ? { value: structuredClone(op.value) } : { deleted: true };
  }

  record(ops: Op[]): void {
    for (const op of ops) this.#pending!.set(op.key, op.type === 'put' ? { ...op, value: structuredClone(op.value) } : op);
  }

  /** Entries of `prefix` with the buffered writes applied over what the backend listed. */
  overlay<T>(prefix: string, listed: Array<[string, T]>, limit?: number): Array<[string, T]> {
    if (!this.#pending) return listed;
    const merged = new Map(listed);
    for (const [key, op] of this.#pending) {
      if (!key.startsWith(prefix)) continue;
      if (op.type === 'put') merged.set(key, structuredClone(op.value) as T);
      else merged.delete(key);
    }
    const out = [...merged].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return limit === undefined ? out : out.slice(0, limit);
  }

  /** Runs `fn` with writes buffered, then commits them with `write` in one batch. One at a time. */
  run<T>(fn: () => Promise<T>, write: (ops: Op[]) => Promise<void>): Promise<T> {
    const next = this.#tail.then(async () => {
      this.#pending = new Map();
      try {
        const result = await fn();
        const ops = [...this.#pending.values()];
        this.#pending = undefined;
        if (ops.length) await write(ops);
        return result;
      } finally {
        this.#pending = undefined;
      }
    });
    this.#tail = next.catch(() => undefined);
    return next;
  }
}

export type KeystoreOp = Parameters<Keystore['batch']>[0][number];
