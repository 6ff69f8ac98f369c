import type { Duplex, Readable, Writable } from 'node:stream';

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

/**
 * Copies `from` into `to` with backpressure, counting bytes and, with a budget, pausing the source
 * as long as the shared budget says. Resolves when `from` ends or either side fails.
 */
export function relay(from: Readable | Duplex, to: Writable | Duplex, options: { budget?: ByteBudget; onBytes(n: number): void }): void {
  from.on('data', (chunk: Buffer) => {
    options.onBytes(chunk.length);
    const wait = options.budget?.delay(chunk.length) ?? 0;
    const ok = to.write(chunk);
    if (!ok || wait > 0) {
      from.pause();
      let drained = ok;
      let waited = wait <= 0;
      const resume = () => drained && waited && from.resume();
      if (!ok) to.once('drain', () => ((drained = true), resume()));
      if (wait > 0) setTimeout(() => ((waited = true), resume()), wait);
    }
  });
  from.once('end', () => to.end());
}
