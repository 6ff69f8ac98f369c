/** Base64 of bytes without copying them first (libsignal hands out fresh Uint8Arrays). */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Bytes of a base64 string, as the Uint8Array<ArrayBuffer> libsignal's API takes. */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> {
  const buf = Buffer.from(text, 'base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) as Uint8Array<ArrayBuffer>;
}
