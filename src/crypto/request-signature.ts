import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalRequest, formatAuthHeader } from '../protocol/request-auth.js';

export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface SigningIdentity {
  userId: string;
  deviceId: number;
  serial: string;
  privateKeyPem: string;
}

/** Signs requests for one device; caches the parsed key. */
export class RequestSigner {
  readonly #id: SigningIdentity;
  readonly #key: KeyObject;

  constructor(identity: SigningIdentity) {
    this.#id = identity;
    this.#key = createPrivateKey(identity.privateKeyPem);
  }

  /** The Authorization header value for this request. */
  authorize(method: string, path: string, body: Uint8Array | string, now: number): string {
    const n = randomBytes(16).toString('base64url');
    const base = { u: this.#id.userId, d: this.#id.deviceId, s: this.#id.serial, t: now, n };
    const text = canonicalRequest({ method, path, bodySha256Hex: sha256Hex(body), ...base });
    const sig = sign('sha256', Buffer.from(text), this.#key).toString('base64url');
    return formatAuthHeader({ ...base, sig });
  }
}

const publicKeys = new Map<string, KeyObject>();

/** Verifies a request signature against the device's SPKI PEM (parsed keys are cached). */
export function verifyRequestSignature(publicKeyPem: string, canonical: string, signatureB64url: string): boolean {
  let key = publicKeys.get(publicKeyPem);
  if (!key) {
    key = createPublicKey(publicKeyPem);
    if (publicKeys.size > 10_000) publicKeys.clear();
    publicKeys.set(publicKeyPem, key);
  }
  try {
    return verify('sha256', Buffer.from(canonical), key, Buffer.from(signatureB64url, 'base64url'));
  } catch {
    return false;
  }
}
