/** Long-lived parts implement start/stop; stop must be idempotent. */
export interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Stops in reverse order, continuing past failures; throws the first failure at the end. */
export async function stopAll(parts: ReadonlyArray<{ stop(): Promise<unknown> }>): Promise<void> {
  let first: unknown;
  for (const part of [...parts].reverse()) {
    try {
      await part.stop();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}
