import { IdentityKeyPair, KyberPreKeyRecord, SignedPreKeyRecord } from '@signalapp/libsignal-client';
import type { KeysUpload } from '../../protocol/messages.js';
import type { Keystore } from '../../storage/keystore.js';
import { generateIdentity, generateKyberPreKey, generatePreKeys, generateSignedPreKey } from './key-generation.js';
import { IDENTITY_KEY, type StoredIdentity } from './stores.js';
import { fromBase64, toBase64 } from './encoding.js';


interface KeyMeta {
  nextPreKeyId: number;
  nextKyberId: number;
  signedPreKeyId: number;
  lastResortId: number;
}

const META = 'sig!meta';
/** How many one-time keys a device uploads in a batch (it uploads another below protocol KEYS_LOW_WATER). */
export const ONE_TIME_KEYS = { preKeys: 100, kyberPreKeys: 20 };

/**
 * This device's Signal keys in the keystore: the identity (made once per home), the signed EC and
 * last-resort Kyber prekeys, and one-time keys made in batches whose private halves stay here.
 */
export class DeviceKeys {
  readonly #keystore: Keystore;

  constructor(keystore: Keystore) {
    this.#keystore = keystore;
  }

  async identity(): Promise<StoredIdentity | undefined> {
    return this.#keystore.get<StoredIdentity>(IDENTITY_KEY);
  }

  /**
   * Makes the identity on first use. With `resetRegistration`, keeps the identity key but takes a new
   * registration id and new signed keys (senders then see 410 and rebuild their sessions).
   */
  async ensureIdentity(options: { resetRegistration?: boolean } = {}): Promise<StoredIdentity> {
    const existing = await this.identity();
    if (existing && !options.resetRegistration) return existing;
    const fresh = generateIdentity();
    const identity: StoredIdentity = {
      identityKeyPair: existing?.identityKeyPair ?? toBase64(fresh.identity.serialize()),
      registrationId: fresh.registrationId === existing?.registrationId ? (fresh.registrationId % 16380) + 1 : fresh.registrationId,
    };
    const pair = IdentityKeyPair.deserialize(fromBase64(identity.identityKeyPair));
    const meta = (await this.#keystore.get<KeyMeta>(META)) ?? { nextPreKeyId: 1, nextKyberId: 1, signedPreKeyId: 0, lastResortId: 0 };
    const signed = generateSignedPreKey(pair, meta.signedPreKeyId + 1);
    const lastResort = generateKyberPreKey(pair, meta.nextKyberId, true);
    const next: KeyMeta = { ...meta, signedPreKeyId: signed.secret.keyId, lastResortId: lastResort.secret.keyId, nextKyberId: meta.nextKyberId + 1 };
    await this.#keystore.batch([
      { type: 'put', key: IDENTITY_KEY, value: identity },
      { type: 'put', key: `sig!signed!${signed.secret.keyId}`, value: signed.secret.record },
      { type: 'put', key: `sig!kyber!${lastResort.secret.keyId}`, value: { record: lastResort.secret.record, lastResort: true } },
      { type: 'put', key: META, value: next },
    ]);
    return identity;
  }

  /** An upload with the current signed keys and fresh one-time keys (their private halves stored first). */
  async upload(counts: { preKeys: number; kyberPreKeys: number } = ONE_TIME_KEYS): Promise<KeysUpload> {
    const identity = await this.ensureIdentity();
    const pair = IdentityKeyPair.deserialize(fromBase64(identity.identityKeyPair));
    const meta = (await this.#keystore.get<KeyMeta>(META))!;
    const pre = generatePreKeys(meta.nextPreKeyId, counts.preKeys);
    const kyber = Array.from({ length: counts.kyberPreKeys }, (_, i) => generateKyberPreKey(pair, meta.nextKyberId + i, false));
    const signedRecord = SignedPreKeyRecord.deserialize(fromBase64((await this.#keystore.get<string>(`sig!signed!${meta.signedPreKeyId}`))!));
    const lastResortRecord = KyberPreKeyRecord.deserialize(
      fromBase64((await this.#keystore.get<{ record: string }>(`sig!kyber!${meta.lastResortId}`))!.record),
    );
    await this.#keystore.batch([
      ...pre.secrets.map((s) => ({ type: 'put' as const, key: `sig!prekey!${s.keyId}`, value: s.record })),
      ...kyber.map((k) => ({ type: 'put' as const, key: `sig!kyber!${k.secret.keyId}`, value: { record: k.secret.record, lastResort: false } })),
      {
        type: 'put',
        key: META,
        value: { ...meta, nextPreKeyId: meta.nextPreKeyId + counts.preKeys, nextKyberId: meta.nextKyberId + counts.kyberPreKeys } satisfies KeyMeta,
      },
    ]);
    return {
      identityKey: toBase64(pair.publicKey.serialize()),
      registrationId: identity.registrationId,
      signedPreKey: { keyId: signedRecord.id(), publicKey: toBase64(signedRecord.publicKey().serialize()), signature: toBase64(signedRecord.signature()) },
      kyberLastResort: {
        keyId: lastResortRecord.id(),
        publicKey: toBase64(lastResortRecord.publicKey().serialize()),
        signature: toBase64(lastResortRecord.signature()),
      },
      ...(pre.upload.length ? { preKeys: pre.upload } : {}),
      ...(kyber.length ? { kyberPreKeys: kyber.map((k) => k.upload) } : {}),
    };
  }
}
