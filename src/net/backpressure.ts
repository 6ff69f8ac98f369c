/**
 * The one backpressure rule for every writer to a remote peer (HTTP tunnels, WebSocket sends and
 * ERROR replies, DNS over TCP, proxy relays):
 *
 *   count what was handed to the sink and not yet flushed (plus a fixed cost per write, so a flood
 *   of tiny writes counts what it costs in memory); above `high`, stop reading the source that
 *   causes the writes until it is back under `low`; above `max`, or above `high` with no source to
 *   stop, drop the connection.
 *
 * A peer that never reads therefore costs at most `max` bytes of queued output, whatever it sends.
 */

/** Anything with a completion callback per write: net.Socket, a WebSocket (via send), a response. */
export interface Sink {
  write(data: Buffer | string, done: (err?: Error | null) => void): unknown;
}

/** The input whose handling produces the writes; paused while the sink is backed up. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

export interface BackpressureLimits {
  /** Above this many waiting bytes the source is paused. */
  high: number;
  /** Below this the source is resumed. */
  low: number;
  /** Above this the connection is dropped, paused source or not. */
  max: number;
}

/** What one write costs beyond its bytes (buffers, callbacks, frame headers). */
export const WRITE_OVERHEAD_BYTES = 128;

export const DEFAULT_LIMITS: BackpressureLimits = { high: 256 * 1024, low: 64 * 1024, max: 1024 * 1024 };

export class BoundedWriter {
  readonly #sink: Sink;
  readonly #source: Pausable | undefined;
  readonly #limits: BackpressureLimits;
  readonly #drop: () => void;
  #pending = 0;
  #paused = false;
  #dropped = false;

  constructor(sink: Sink, options: { source?: Pausable; limits?: BackpressureLimits; drop: () => void }) {
    this.#sink = sink;
    this.#source = options.source;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#drop = options.drop;
  }

  /** Bytes (with the per-write cost) handed to the sink and not flushed yet. */
  get pending(): number {
    return this.#pending;
  }

  /** Whether the source is paused by this writer. */
  get holding(): boolean {
    return this.#paused;
  }

  get dropped(): boolean {
    return this.#dropped;
  }

  /** Writes, applying the rule; false when the connection was (or had been) dropped. */
  write(data: Buffer | string): boolean {
    if (this.#dropped) return false;
    const cost = (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + WRITE_OVERHEAD_BYTES;
    this.#pending += cost;
    this.#sink.write(data, () => {
      this.#pending -= cost;
      if (this.#paused && this.#pending <= this.#limits.low && !this.#dropped) {
        this.#paused = false;
        this.#source?.resume();
      }
    });
    if (this.#pending > this.#limits.max || (this.#pending > this.#limits.high && !this.#source)) {
      this.#dropped = true;
      this.#drop();
      return false;
    }
    if (this.#pending > this.#limits.high && !this.#paused) {
      this.#paused = true;
      this.#source!.pause();
    }
    return true;
  }
}
