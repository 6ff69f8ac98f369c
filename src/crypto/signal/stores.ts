/**
 * libsignal's stores over the agent's Keystore: one thin class per store, the keystore injected.
 * Records are kept as libsignal serializations in base64, sessions (written on every message) as
 * bytes. Key layout:
 *   sig!identity                     {identityKeyPair, registrationId}
 *   sig!session!<user>.<device>      SessionRecord (bytes; base64 when written before 2026-12)
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
import { fromBase64, toBase64 } from './encoding.js';

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

/**
 * Sessions, with the records this process has read or written kept in memory: every encrypt and
 * decrypt reads and writes its session, and deserializing a record (with its post-quantum ratchet
 * state) on each read was most of our overhead over libsignal. The keystore belongs to this process
 * alone (LevelDB lock), so the cache cannot go stale; writes still go to the keystore first.
 */
export class KeystoreSessionStore extends SessionStore {
  readonly #cache = new Map<string, SessionRecord | null>();

  constructor(private readonly keystore: Keystore) {
    super();
  }

  async saveSession(name: ProtocolAddress, record: SessionRecord): Promise<void> {
    const key = addressKey(name);
    await this.keystore.put(`sig!session!${key}`, record.serialize());
    this.#cache.set(key, record);
  }

  async getSession(name: ProtocolAddress): Promise<SessionRecord | null> {
    const key = addressKey(name);
    const cached = this.#cache.get(key);
    if (cached !== undefined) return cached;
    const raw = await this.keystore.get<Uint8Array<ArrayBuffer> | string>(`sig!session!${key}`);
    const record = raw === undefined ? null : SessionRecord.deserialize(typeof raw === 'string' ? fromBase64(raw) : raw);
    this.#cache.set(key, record);
    return record;
  }

  /** Forgets what this process cached (after the keystore was changed behind the store's back). */
  forget(userId: string, deviceId: number): void {
    this.#cache.delete(`${userId}.${deviceId}`);
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
  #own: { pair: IdentityKeyPair; registrationId: number } | undefined;
  /** Contact identities read or written by this process (the keystore is this process's alone). */
  readonly #peers = new Map<string, PeerIdentity | null>();

  constructor(private readonly keystore: Keystore) {
    super();
  }

  async #ownIdentity(): Promise<{ pair: IdentityKeyPair; registrationId: number }> {
    if (!this.#own) {
      const own = await this.keystore.get<StoredIdentity>(IDENTITY_KEY);
      if (!own) throw new Error('IdentityKeyStore/getIdentityKey: this home has no Signal identity');
      this.#own = { pair: IdentityKeyPair.deserialize(fromBase64(own.identityKeyPair)), registrationId: own.registrationId };
    }
    return this.#own;
  }

  async #peer(key: string): Promise<PeerIdentity | null> {
    let p = this.#peers.get(key);
    if (p === undefined) {
      p = (await this.keystore.get<PeerIdentity>(`sig!peer!${key}`)) ?? null;
      this.#peers.set(key, p);
    }
    return p;
  }

  async #setPeer(key: string, value: PeerIdentity): Promise<void> {
    await this.keystore.put(`sig!peer!${key}`, value);
    this.#peers.set(key, value);
  }

  /** Forgets what this process cached of a contact device (after a change made elsewhere). */
  forget(userId: string, deviceId: number): void {
    this.#peers.delete(`${userId}.${deviceId}`);
  }

  async getIdentityKey(): Promise<PrivateKey> {
    return (await this.#ownIdentity()).pair.privateKey;
  }

  override async getIdentityKeyPair(): Promise<IdentityKeyPair> {
    return (await this.#ownIdentity()).pair;
  }

  async getLocalRegistrationId(): Promise<number> {
    return (await this.#ownIdentity()).registrationId;
  }

  async saveIdentity(name: ProtocolAddress, key: PublicKey): Promise<IdentityChange> {
    const k = addressKey(name);
    const known = await this.#peer(k);
    const value = toBase64(key.serialize());
    if (!known) {
      await this.#setPeer(k, { key: value });
      return IdentityChange.NewOrUnchanged;
    }
    if (known.key === value) return IdentityChange.NewOrUnchanged;
    // Never replace silently: keep the trusted key, remember the new one until the user accepts it.
    if (known.pending !== value) await this.#setPeer(k, { key: known.key, pending: value });
    return IdentityChange.ReplacedExisting;
  }

  async isTrustedIdentity(name: ProtocolAddress, key: PublicKey, direction: Direction): Promise<boolean> {
    const known = await this.#peer(addressKey(name));
    if (!known) return true;
    if (known.key === toBase64(key.serialize())) return true;
    // Receiving from a changed identity is allowed (and recorded as pending by saveIdentity); sending is not.
    return direction === Direction.Receiving;
  }

  async getIdentity(name: ProtocolAddress): Promise<PublicKey | null> {
    const known = await this.#peer(addressKey(name));
    return known ? PublicKey.deserialize(fromBase64(known.key)) : null;
  }
}

export class KeystorePreKeyStore extends PreKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async savePreKey(id: number, record: PreKeyRecord): Promise<void> {
    await this.keystore.put(`sig!prekey!${id}`, toBase64(record.serialize()));
  }

  async getPreKey(id: number): Promise<PreKeyRecord> {
    const raw = await this.keystore.get<string>(`sig!prekey!${id}`);
    if (raw === undefined) throw new Error(`PreKeyStore/getPreKey: no prekey ${id}`);
    return PreKeyRecord.deserialize(fromBase64(raw));
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
    await this.keystore.put(`sig!signed!${id}`, toBase64(record.serialize()));
  }

  async getSignedPreKey(id: number): Promise<SignedPreKeyRecord> {
    const raw = await this.keystore.get<string>(`sig!signed!${id}`);
    if (raw === undefined) throw new Error(`SignedPreKeyStore/getSignedPreKey: no signed prekey ${id}`);
    return SignedPreKeyRecord.deserialize(fromBase64(raw));
  }
}

export class KeystoreKyberPreKeyStore extends KyberPreKeyStore {
  constructor(private readonly keystore: Keystore) {
    super();
  }

  async saveKyberPreKey(id: number, record: KyberPreKeyRecord): Promise<void> {
    await this.keystore.put(`sig!kyber!${id}`, { record: toBase64(record.serialize()), lastResort: false });
  }

  async getKyberPreKey(id: number): Promise<KyberPreKeyRecord> {
    const raw = await this.keystore.get<{ record: string }>(`sig!kyber!${id}`);
    if (raw === undefined) throw new Error(`KyberPreKeyStore/getKyberPreKey: no Kyber prekey ${id}`);
    return KyberPreKeyRecord.deserialize(fromBase64(raw.record));
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
