/**
 * libsignal's stores over the agent's Keystore: one thin class per store, the keystore injected.
 * Records are kept as libsignal serializations in base64. Key layout:
 *   sig!identity                     {identityKeyPair, registrationId}
 *   sig!session!<user>.<device>      SessionRecord
 *   sig!peer!<user>.<device>         {key, trusted, pending?}  the contact device's identity
 *   sig!prekey!<id> / sig!signed!<id> / sig!kyber!<id>   private key records
 */
import {
  Direction,
  IdentityChange,
  IdentityKeyPair,
  IdentityKeyStore,
  KyberPreKeyRecord,
  KyberPreKeyStore,
  PreKeyRecord,
  PreKeyStore,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SessionRecord,
  SessionStore,
  SignedPreKeyRecord,
  SignedPreKeyStore,
} from '@signalapp/libsignal-client';
import type { Keystore } from '../../storage/keystore.js';

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
const bytes = (text: string) => new Uint8Array(Buffer.from(text, 'base64'));
const addressKey = (a: ProtocolAddress) => `${a.name()}.${a.deviceId()}`;

export interface StoredIdentity {
  identityKeyPair: string;
  registrationId: number;
}

/** A contact device's identity key: trusted on first use; a different key waits in `pending`. */
export interface PeerIdentity {
  key: string;
  pending?: string;
}

export const IDENTITY_KEY = 'sig!identity';
export const peerKey = (userId: string, deviceId: number) => `sig!peer!${userId}.${deviceId}`;
export const sessionKey = (userId: string, deviceId: number) => `sig!session!${userId}.${deviceId}`;

export class KeystoreSessionStore extends SessionStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    await this.keystore.put(`sig!session!${addressKey(name)}`, b64(record.serialize()));
  }

  async getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    const raw = await this.keystore.get<string>(`sig!session!${addressKey(name)}`);
    return raw === undefined ? null : SessionRecord.deserialize(bytes(raw));
  }

  async getExistingSessions(addresses: ProtocolAddress[]): Promise<SessionRecord[]> {
    const out: SessionRecord[] = [];
    for (const a of addresses) {
      const s = await this.getSession(a);
      if (!s) throw new Error(`SessionStore/getExistingSessions: no session for ${addressKey(a)}`);
      out.push(s);
    }
    return out;
  }
}

/**
 * Our identity and the contacts' device identities. Trust on first use per contact device; a
 * changed key is recorded as pending and refused for sending until `trust` accepts it.
 */
export class KeystoreIdentityStore extends IdentityKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async #own(): Promise<StoredIdentity> {
    const own = await this.keystore.get<StoredIdentity>(IDENTITY_KEY);
    if (!own) throw new Error('IdentityKeyStore/getIdentityKey: this home has no Signal identity');
    return own;
  }

  async getIdentityKey(): Promise<PrivateKey> {
    return IdentityKeyPair.deserialize(bytes((await this.#own()).identityKeyPair)).privateKey;
  }

  override async getIdentityKeyPair(): Promise<IdentityKeyPair> {
    return IdentityKeyPair.deserialize(bytes((await this.#own()).identityKeyPair));
  }

  async getLocalRegistrationId(): Promise<number> {
    return (await this.#own()).registrationId;
  }

  async saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const k = `sig!peer!${addressKey(name)}`;
    const known = await this.keystore.get<PeerIdentity>(k);
    const value = b64(key.serialize());
    if (!known) {
      await this.keystore.put(k, { key: value } satisfies PeerIdentity);
      return IdentityChange.NewOrUnchanged;
    }
    if (known.key === value) return IdentityChange.NewOrUnchanged;
    // Never replace silently: keep the trusted key, remember the new one until the user accepts it.
    await this.keystore.put(k, { key: known.key, pending: value } satisfies PeerIdentity);
    return IdentityChange.ReplacedExisting;
  }

  async isTrustedIdentity(name: ProtocolAddress, key: PublicKey, direction: Direction): Promise<boolean> {
    const known = await this.keystore.get<PeerIdentity>(`sig!peer!${addressKey(name)}`);
    if (!known) return true;
    if (known.key === b64(key.serialize())) return true;
    // Receiving from a changed identity is allowed (and recorded as pending by saveIdentity); sending is not.
    return direction === Direction.Receiving;
  }

  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    const known = await this.keystore.get<PeerIdentity>(`sig!peer!${addressKey(name)}`);
    return known ? PublicKey.deserialize(bytes(known.key)) : null;
  }
}

export class KeystorePreKeyStore extends PreKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    await this.keystore.put(`sig!prekey!${id}`, b64(record.serialize()));
  }

  async getPreKey(id: number): Promise<PreKeyRecord> {
    const raw = await this.keystore.get<string>(`sig!prekey!${id}`);
    if (raw === undefined) throw new Error(`PreKeyStore/getPreKey: no prekey ${id}`);
    return PreKeyRecord.deserialize(bytes(raw));
  }

  async removePreKey(id: number): Promise<void> {
    await this.keystore.del(`sig!prekey!${id}`);
  }
}

export class KeystoreSignedPreKeyStore extends SignedPreKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async saveSignedPreKey(id: number, record: SignedPreKeyRecord): Promise<void> {
    await this.keystore.put(`sig!signed!${id}`, b64(record.serialize()));
  }

  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const raw = await this.keystore.get<string>(`sig!signed!${id}`);
    if (raw === undefined) throw new Error(`SignedPreKeyStore/getSignedPreKey: no signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(bytes(raw));
  }
}

export class KeystoreKyberPreKeyStore extends KyberPreKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    await this.keystore.put(`sig!kyber!${id}`, { record: b64(record.serialize()), lastResort: false });
  }

  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const raw = await this.keystore.get<{ record: string }>(`sig!kyber!${id}`);
    if (raw === undefined) throw new Error(`KyberPreKeyStore/getKyberPreKey: no Kyber prekey ${id}`);
    return KyberPreKeyRecord.deserialize(bytes(raw.record));
  }

  /** One-time Kyber keys are deleted once used; the last-resort key stays. */
  async markKyberPreKeyUsed(id: number): Promise<void> {
    const raw = await this.keystore.get<{ lastResort: boolean }>(`sig!kyber!${id}`);
    if (raw && !raw.lastResort) await this.keystore.del(`sig!kyber!${id}`);
  }
}

/** All five stores over one keystore. */
export function signalStores(keystore: Keystore) {
  return {
    session: new KeystoreSessionStore(keystore),
    identity: new KeystoreIdentityStore(keystore),
    preKey: new KeystorePreKeyStore(keystore),
    signedPreKey: new KeystoreSignedPreKeyStore(keystore),
    kyberPreKey: new KeystoreKyberPreKeyStore(keystore),
  };
}
export type SignalStores = ReturnType<typeof signalStores>;
