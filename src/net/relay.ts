import { finished, type Duplex, type Readable, type Writable } from 'node:stream';
import { BoundedWriter, type BackpressureLimits } from './backpressure.js';
import { attachReader } from './reused-reads.js';

/**
 * A token bucket in bytes per second shared by every tunnel of a proxy (`--max-mbps`). `delay(n)`
 * takes n bytes and says how long the caller must wait before sending more.
 */
export class ByteBudget {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #at = performance.now();

  constructor(bytesPerSecond: number) {
    this.#rate = bytesPerSecond;
    // A fiftieth of a second of burst keeps the cap tight even over short transfers; larger chunks
    // go through and put the budget in debt, which the next ones wait out.
    this.#burst = Math.max(16 * 1024, bytesPerSecond / 50);
    this.#tokens = this.#burst;
  }

  delay(bytes: number): number {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#rate) * 1000;
  }
}

/** Relay buffering: the source pauses above `high` waiting bytes (a few socket reads). */
export const RELAY_LIMITS: BackpressureLimits = { high: 128 * 1024, low: 32 * 1024, max: 4 * 1024 * 1024 };

/**
 * Copies `from` into `to` under the backpressure rule (BoundedWriter), counting bytes and, with a
 * budget, pausing the source as long as the shared budget says. A destination socket dialed with
 * reused read buffers (reused-reads.ts) hands its chunks over directly, each buffer given back
 * once its write has flushed; any other stream through `data`.
 */
export function relay(from: Readable | Duplex, to: Writable | Duplex, options: { budget?: ByteBudget; onBytes(n: number): void }): void {
  let budgetWait = false;
  const writer = new BoundedWriter(to, {
    limits: RELAY_LIMITS,
    source: { pause: () => from.pause(), resume: () => !budgetWait && from.resume() },
    drop: () => {
      from.destroy();
      to.destroy();
    },
  });
  const take = (chunk: Buffer, release?: () => void) => {
    options.onBytes(chunk.length);
    writer.write(chunk, release);
    const wait = options.budget?.delay(chunk.length) ?? 0;
    if (wait > 0) {
      budgetWait = true;
      from.pause();
      setTimeout(() => {
        budgetWait = false;
        if (!writer.holding) from.resume();
      }, wait);
    }
  };
  if (!attachReader(from, take)) from.on('data', (chunk: Buffer) => take(chunk));
  // The other side may be gone already (closed, which ends this one gracefully): no end() to a destroyed stream.
  from.once('end', () => !to.destroyed && !to.writableEnded && to.end());
  from.resume();
}

/**
 * Ends a stream's writable side and destroys it once what was written is flushed (or at once if
 * it is already gone): the graceful way to close one side of a tunnel when the other has closed,
 * so that the last bytes (an HTTP/2 stream's queued DATA, a socket's buffered writes) arrive.
 */
export function closeAfterFlush(stream: Duplex): void {
  if (stream.destroyed) return;
  if (!stream.writableEnded) stream.end();
  finished(stream, { readable: false }, () => stream.destroy());
}

/**
 * Both directions of a tunnel: `a` ↔ `b` under the backpressure rule, each side closed gracefully
 * when the other closes (closeAfterFlush). `onClosed` runs once, when `a` (the client side) closes.
 */
export function splice(a: Duplex, b: Duplex, options: { budget?: ByteBudget; onBytes(n: number): void }, onClosed: () => void): void {
  let closed = false;
  a.once('close', () => {
    closeAfterFlush(b);
    if (!closed) {
      closed = true;
      onClosed();
    }
  });
  b.once('close', () => closeAfterFlush(a));
  relay(a, b, options);
  relay(b, a, options);
}
