import { randomInt } from 'node:crypto';
import { IdentityKeyPair, KEMKeyPair, KyberPreKeyRecord, PreKeyRecord, PrivateKey, SignedPreKeyRecord } from '@signalapp/libsignal-client';
import type { KeysUpload, KyberPreKeyUpload, PreKeyUpload } from '../../protocol/messages.js';
import { fromBase64, toBase64 } from './encoding.js';


/** Private records to keep in the device's keystore, serialized (base64), by key id. */
export interface GeneratedSecrets {
  preKeys: Array<{ keyId: number; record: string }>;
  signedPreKey?: { keyId: number; record: string };
  kyberPreKeys: Array<{ keyId: number; record: string; lastResort: boolean }>;
}

export function generateIdentity(): { identity: IdentityKeyPair; registrationId: number } {
  return { identity: IdentityKeyPair.generate(), registrationId: randomInt(1, 16381) };
}

/** One-time EC prekeys with ids from `firstId`. */
export function generatePreKeys(firstId: number, count: number): { upload: PreKeyUpload[]; secrets: GeneratedSecrets['preKeys'] } {
  const upload: PreKeyUpload[] = [];
  const secrets: GeneratedSecrets['preKeys'] = [];
  for (let i = 0; i < count; i++) {
    const keyId = firstId + i;
    const priv = PrivateKey.generate();
    upload.push({ keyId, publicKey: toBase64(priv.getPublicKey().serialize()) });
    secrets.push({ keyId, record: toBase64(PreKeyRecord.new(keyId, priv.getPublicKey(), priv).serialize()) });
  }
  return { upload, secrets };
}

/** A Kyber prekey signed by the identity key (one-time, or the last-resort one). */
export function generateKyberPreKey(identity: IdentityKeyPair, keyId: number, lastResort: boolean, now = Date.now()) {
  const pair = KEMKeyPair.generate();
  const signature = identity.privateKey.sign(pair.getPublicKey().serialize());
  const upload: KyberPreKeyUpload = { keyId, publicKey: toBase64(pair.getPublicKey().serialize()), signature: toBase64(signature) };
  return { upload, secret: { keyId, record: toBase64(KyberPreKeyRecord.new(keyId, now, pair, signature).serialize()), lastResort } };
}

/** A signed EC prekey. */
export function generateSignedPreKey(identity: IdentityKeyPair, keyId: number, now = Date.now()) {
  const priv = PrivateKey.generate();
  const signature = identity.privateKey.sign(priv.getPublicKey().serialize());
  return {
    upload: { keyId, publicKey: toBase64(priv.getPublicKey().serialize()), signature: toBase64(signature) },
    secret: { keyId, record: toBase64(SignedPreKeyRecord.new(keyId, now, priv.getPublicKey(), priv, signature).serialize()) },
  };
}

/** A complete first upload for a device, with the private records to keep. */
export function generateKeysUpload(
  identity: IdentityKeyPair,
  registrationId: number,
  options: { preKeys: number; kyberPreKeys: number; firstId?: number },
): { upload: KeysUpload; secrets: GeneratedSecrets } {
  const first = options.firstId ?? 1;
  const signed = generateSignedPreKey(identity, first);
  const lastResort = generateKyberPreKey(identity, first, true);
  const pre = generatePreKeys(first, options.preKeys);
  const kyber = Array.from({ length: options.kyberPreKeys }, (_, i) => generateKyberPreKey(identity, first + 1 + i, false));
  return {
    upload: {
      identityKey: toBase64(identity.publicKey.serialize()),
      registrationId,
      signedPreKey: signed.upload,
      kyberLastResort: lastResort.upload,
      ...(pre.upload.length ? { preKeys: pre.upload } : {}),
      ...(kyber.length ? { kyberPreKeys: kyber.map((k) => k.upload) } : {}),
    },
    secrets: { preKeys: pre.secrets, signedPreKey: signed.secret, kyberPreKeys: [lastResort.secret, ...kyber.map((k) => k.secret)] },
  };
}
