/**
 * A Bloom filter over strings: `has` is false only for strings never added. Used to skip LevelDB
 * lookups that would miss (most message ids are new).
 */
export class BloomFilter {
  readonly #bits: Uint32Array;
  readonly #mask: number;
  readonly #hashes: number;

  /** `log2Bits`: size of the filter (2^log2Bits bits); `hashes`: probes per string. */
  constructor(log2Bits = 24, hashes = 7) {
    this.#bits = new Uint32Array(2 ** (log2Bits - 5));
    this.#mask = 2 ** log2Bits - 1;
    this.#hashes = hashes;
  }

  add(value: string): void {
    let [h1, h2] = hashPair(value);
    for (let i = 0; i < this.#hashes; i++, h1 = (h1 + h2) >>> 0) {
      const bit = h1 & this.#mask;
      this.#bits[bit >>> 5]! |= 1 << (bit & 31);
    }
  }

  has(value: string): boolean {
    let [h1, h2] = hashPair(value);
    for (let i = 0; i < this.#hashes; i++, h1 = (h1 + h2) >>> 0) {
      const bit = h1 & this.#mask;
      if ((this.#bits[bit >>> 5]! & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }
}

/** Two independent 32-bit FNV-1a style hashes (different offsets and primes), for double hashing. */
function hashPair(value: string): [number, number] {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ value.length;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  return [a >>> 0, (b | 1) >>> 0];
}
