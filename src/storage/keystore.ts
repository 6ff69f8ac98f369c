/**
 * The agent's local store (identity, credentials, received messages; later the Signal stores).
 * Values are JSON, or bytes: a Uint8Array is kept as its bytes and read back as a Uint8Array (for large
 * opaque records, see keystore-values.ts). Keys are strings; `list(prefix)` returns entries in key order.
 */
export interface Keystore {
  open(): Promise<void>;
  close(): Promise<void>;
  get<T>(key: string): Promise<T | undefined>;
  put(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  /** Writes several keys atomically. */
  batch(ops: Array<{ type: 'put'; key: string; value: unknown } | { type: 'del'; key: string }>): Promise<void>;
  list<T>(prefix: string, options?: { limit?: number }): Promise<Array<[string, T]>>;
  /**
   * Runs `fn` with every write it makes (through this keystore) buffered and visible to its reads,
   * then writes them in one atomic batch; nothing is written if `fn` throws. For instance a
   * decrypted message and the ratchet state that decrypting it produced.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T>;
}
