/**
 * The one backpressure rule for every writer to a remote peer (HTTP tunnels, WebSocket sends and
 * ERROR replies, DNS over TCP, proxy relays):
 *
 *   count what was handed to the sink and not yet flushed (plus a fixed cost per write, so a flood
 *   of tiny writes counts what it costs in memory); above the high-water mark, stop reading the
 *   source that causes the writes until the sink has drained; above `max`, or above the high-water
 *   mark with no source to stop, drop the connection.
 *
 * A peer that never reads therefore costs at most `max` bytes of queued output, whatever it sends.
 *
 * Two kinds of sink: a Node stream (a socket) counts its own unflushed bytes and says when it is
 * above its high-water mark (`write()` false) and when it has drained (`drain`), so nothing is
 * added per write; anything else (a WebSocket's `send`) reports each write's completion through a
 * callback, and `high`/`low` apply.
 */

/** A Node writable stream: `writableLength` bytes wait unflushed; `write()` is false above its mark. */
export interface StreamSink {
  write(data: Buffer | string, done?: (err?: Error | null) => void): boolean;
  readonly writableLength: number;
  once(event: 'drain', listener: () => void): unknown;
}

/** Anything with a completion callback per write (a WebSocket via `send`). */
export interface CallbackSink {
  write(data: Buffer | string, done: (err?: Error | null) => void): unknown;
}

export type Sink = StreamSink | CallbackSink;

/** The input whose handling produces the writes; paused while the sink is backed up. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

export interface BackpressureLimits {
  /** Callback sinks: above this many waiting bytes the source is paused (streams use their own mark). */
  high: number;
  /** Callback sinks: below this the source is resumed. */
  low: number;
  /** Above this the connection is dropped, paused source or not. */
  max: number;
}

/** What one write costs beyond its bytes (buffers, callbacks, frame headers). */
export const WRITE_OVERHEAD_BYTES = 128;

export const DEFAULT_LIMITS: BackpressureLimits = { high: 256 * 1024, low: 64 * 1024, max: 1024 * 1024 };

const isStream = (sink: Sink): sink is StreamSink => typeof (sink as Partial<StreamSink>).writableLength === 'number';

export class BoundedWriter {
  readonly #sink: Sink;
  readonly #source: Pausable | undefined;
  readonly #limits: BackpressureLimits;
  readonly #drop: () => void;
  readonly #stream: boolean;
  /** Callback sinks: bytes (with the per-write cost) not flushed yet. Streams: writes waiting in the stream. */
  #pending = 0;
  #paused = false;
  #dropped = false;

  constructor(sink: Sink, options: { source?: Pausable; limits?: BackpressureLimits; drop: () => void }) {
    this.#sink = sink;
    this.#source = options.source;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#drop = options.drop;
    this.#stream = isStream(sink);
  }

  /** Bytes (with the per-write cost) handed to the sink and not flushed yet. */
  get pending(): number {
    return this.#stream ? (this.#sink as StreamSink).writableLength + this.#pending * WRITE_OVERHEAD_BYTES : this.#pending;
  }

  /** Whether the source is paused by this writer. */
  get holding(): boolean {
    return this.#paused;
  }

  get dropped(): boolean {
    return this.#dropped;
  }

  /**
   * Writes, applying the rule; false when the connection was (or had been) dropped. `flushed`, if
   * given, runs once the sink no longer holds `data` (written out, or failed), and only then.
   */
  write(data: Buffer | string, flushed?: () => void): boolean {
    if (this.#dropped) {
      flushed?.();
      return false;
    }
    let above: boolean;
    if (this.#stream) {
      const sink = this.#sink as StreamSink;
      // Writes waiting in the stream, for their per-write cost: none once it has emptied.
      if (sink.writableLength === 0) this.#pending = 0;
      above = !(flushed ? sink.write(data, flushed) : sink.write(data));
      if (sink.writableLength > 0) this.#pending++;
    } else {
      const cost = (typeof data === 'string' ? Buffer.byteLength(data) : data.length) + WRITE_OVERHEAD_BYTES;
      this.#pending += cost;
      (this.#sink as CallbackSink).write(data, () => {
        flushed?.();
        this.#pending -= cost;
        if (this.#pending <= this.#limits.low) this.#drained();
      });
      above = this.#pending > this.#limits.high;
    }
    if (this.pending > this.#limits.max || (above && !this.#source)) {
      this.#dropped = true;
      this.#drop();
      return false;
    }
    if (above && !this.#paused) {
      this.#paused = true;
      this.#source!.pause();
      // A stream says when it has drained (listened to only while paused: one listener less per socket).
      if (this.#stream) (this.#sink as StreamSink).once('drain', () => this.#drained());
    }
    return true;
  }

  #drained(): void {
    if (this.#stream) this.#pending = 0;
    if (!this.#paused || this.#dropped) return;
    this.#paused = false;
    this.#source?.resume();
  }
}
