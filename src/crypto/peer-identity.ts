import { createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';

/**
 * A give peer's identity key (Ed25519, made fresh for each run and sent with its registration).
 * Verifiers challenge the proxy at a registered address to sign a nonce together with the peer id
 * it registered under, so a registration pointing at someone else's proxy fails: that proxy signs
 * with another key, or names another peer id (which also defeats relaying the challenge there).
 */
export class PeerIdentity {
  readonly #privateKey: KeyObject;
  /** Raw public key, base64url (43 characters); what the registration carries. */
  readonly publicKey: string;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    this.#privateKey = privateKey;
    this.publicKey = publicKey.export({ format: 'jwk' }).x!;
  }

  /** The proof for `nonce`: `PEERID.SIGNATURE` (base64url). */
  prove(peerId: string, nonce: string): string {
    return `${peerId}.${sign(null, proofMessage(peerId, nonce), this.#privateKey).toString('base64url')}`;
  }
}

const proofMessage = (peerId: string, nonce: string) => Buffer.from(`lantern-peer-proof/1\n${peerId}\n${nonce}`);

/** Challenges are short printable tokens (the verifier's random nonce). */
export const CHALLENGE_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;

/** Does `proof` show that the holder of `publicKey` registered as `peerId` answered `nonce`? */
export function checkPeerProof(publicKey: string, peerId: string, nonce: string, proof: string | undefined): 'ok' | 'missing' | 'mismatch' {
  if (!proof) return 'missing';
  const dot = proof.indexOf('.');
  if (dot <= 0 || proof.slice(0, dot) !== peerId) return 'mismatch';
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: publicKey }, format: 'jwk' });
    return verify(null, proofMessage(peerId, nonce), key, Buffer.from(proof.slice(dot + 1), 'base64url')) ? 'ok' : 'mismatch';
  } catch {
    return 'mismatch';
  }
}
