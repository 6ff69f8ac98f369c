/**
 * How keystore values are held as bytes: JSON text, or a Uint8Array's own bytes behind a 0x00 byte
 * (which no JSON text begins with, so records written before binary values existed read as they
 * did). Binary values are for large opaque records such as Signal sessions (~6 KB), where base64
 * and then JSON cost more than the record's own serialization (JSON.stringify scans every
 * character of a string for escapes: ~12 µs for an 8 KB base64 string).
 */
const BINARY = 0x00;

export function encodeValue(value: unknown): Buffer {
  if (value instanceof Uint8Array) {
    const out = Buffer.allocUnsafe(value.byteLength + 1);
    out[0] = BINARY;
    out.set(value, 1);
    return out;
  }
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function decodeValue(bytes: Buffer): unknown {
  if (bytes[0] === BINARY) return new Uint8Array(bytes.buffer, bytes.byteOffset + 1, bytes.byteLength - 1);
  return JSON.parse(bytes.toString('utf8'));
}

/** The codec as a LevelDB value encoding. */
export const levelValueEncoding = { name: 'lantern-keystore-value', format: 'buffer' as const, encode: encodeValue, decode: decodeValue };
