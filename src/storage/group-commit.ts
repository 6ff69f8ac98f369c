import type { Level } from 'level';
import { levelError } from './level-errors.js';

export type LevelOp =
  | { type: 'put'; key: string; value: unknown }
  | { type: 'del'; key: string };

interface Pending {
  ops: LevelOp[];
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit: writes issued while a batch is being written are gathered into the next single
 * LevelDB batch. With `sync` every batch is fsynced before its writers hear back, so one fsync
 * covers many concurrent sends.
 */
export class GroupCommit {
  readonly #db: Level<string, unknown>;
  readonly #sync: boolean;
  #pending: Pending[] = [];
  #busy = false;

  readonly #inject: (() => void) | undefined;

  /** `inject` runs before each batch is written; what it throws fails that batch (fault-injection tests). */
  constructor(db: Level<string, unknown>, options: { sync: boolean; inject?: () => void }) {
    this.#db = db;
    this.#sync = options.sync;
    this.#inject = options.inject;
  }

  write(ops: LevelOp[]): Promise<void> {
    if (ops.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.#pending.push({ ops, resolve, reject });
      if (!this.#busy) {
        this.#busy = true;
        setImmediate(() => void this.#flush());
      }
    });
  }

  /** Resolves once everything submitted so far is written (or failed: those writers heard). */
  async drain(): Promise<void> {
    if (!this.#busy) return;
    await new Promise<void>((resolve) => this.#pending.push({ ops: [], resolve, reject: () => resolve() }));
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const group = this.#pending;
      this.#pending = [];
      try {
        // A chained batch costs a third of an array batch per operation in abstract-level.
        const batch = this.#db.batch();
        for (const p of group) {
          for (const op of p.ops) {
            if (op.type === 'put') batch.put(op.key, op.value);
            else batch.del(op.key);
          }
        }
        this.#inject?.();
        await batch.write({ sync: this.#sync } as never);
        for (const p of group) p.resolve();
      } catch (err) {
        const wrapped = levelError(err, 'write');
        for (const p of group) p.reject(wrapped);
      }
    }
    this.#busy = false;
  }
}
