import { createHash, createHmac, randomBytes } from 'node:crypto';

export const CANARY_BYTES = 64 * 1024;

/**
 * Canary content: HMAC-SHA256(secret, nonce || block index) blocks, so only holders of the secret
 * (the server) can produce it, and the server can serve it again for the same nonce without state.
 */
export class CanaryMaker {
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    this.#secret = secret;
  }

  static newNonce(): string {
    return randomBytes(16).toString('hex');
  }

  content(nonce: string, length = CANARY_BYTES): Buffer {
    const blocks: Buffer[] = [];
    for (let i = 0; blocks.length * 32 < length; i++) {
      blocks.push(createHmac('sha256', this.#secret).update(`${nonce}:${i}`).digest());
    }
    return Buffer.concat(blocks).subarray(0, length);
  }

  digest(nonce: string, length = CANARY_BYTES): string {
    return createHash('sha256').update(this.content(nonce, length)).digest('hex');
  }
}
