import { Fingerprint, IdentityKeyPair, PublicKey } from '@signalapp/libsignal-client';
import type { Address } from '../../protocol/messages.js';
import type { Keystore } from '../../storage/keystore.js';
import { IDENTITY_KEY, sessionKey, type PeerIdentity, type SignalStores, type StoredIdentity } from './stores.js';
import { fromBase64, toBase64 } from './encoding.js';

const FINGERPRINT_ITERATIONS = 5200;
const FINGERPRINT_VERSION = 2;

export interface ContactDevice {
  deviceId: number;
  /** The identity key trusted for this device (base64). */
  key: string;
  /** A newer identity key seen but not yet trusted. */
  pending?: string;
}

/** The identities of a contact's devices, as this home has seen them, and what the user accepted. */
export class ContactIdentities {
  readonly #keystore: Keystore;
  readonly #stores: SignalStores | undefined;

  /** Pass the stores a cipher in this process uses, so their caches learn of what `trust` changes. */
  constructor(keystore: Keystore, stores?: SignalStores) {
    this.#keystore = keystore;
    this.#stores = stores;
  }

  async devices(userId: string): Promise<ContactDevice[]> {
    const rows = await this.#keystore.list<PeerIdentity>(`sig!peer!${userId}.`);
    return rows.map(([key, p]) => ({ deviceId: Number(key.slice(key.lastIndexOf('.') + 1)), key: p.key, ...(p.pending ? { pending: p.pending } : {}) }));
  }

  /**
   * Accepts every changed identity of the contact; their old sessions go, so the next message
   * builds sessions with the new keys. Returns the devices whose key was accepted.
   */
  async trust(userId: string): Promise<number[]> {
    const changed = (await this.devices(userId)).filter((d) => d.pending !== undefined);
    await this.#keystore.batch(
      changed.flatMap((d) => [
        { type: 'put' as const, key: `sig!peer!${userId}.${d.deviceId}`, value: { key: d.pending! } satisfies PeerIdentity },
        { type: 'del' as const, key: sessionKey(userId, d.deviceId) },
      ]),
    );
    for (const d of changed) {
      this.#stores?.identity.forget(userId, d.deviceId);
      this.#stores?.session.forget(userId, d.deviceId);
    }
    return changed.map((d) => d.deviceId);
  }

  /**
   * The safety number of this device with each device of the contact: 60 digits that both sides
   * compute alike (libsignal Fingerprint, version 2). For a changed identity, of the new key.
   */
  async safetyNumbers(self: Address, userId: string): Promise<Array<{ deviceId: number; safetyNumber: string; changed: boolean }>> {
    const own = await this.#keystore.get<StoredIdentity>(IDENTITY_KEY);
    if (!own) return [];
    const ownKey = IdentityKeyPair.deserialize(fromBase64(own.identityKeyPair)).publicKey;
    const localId = new TextEncoder().encode(`${self.userId}.${self.deviceId}`);
    return (await this.devices(userId)).map((d) => {
      const key = PublicKey.deserialize(fromBase64(d.pending ?? d.key));
      const fp = Fingerprint.new(FINGERPRINT_ITERATIONS, FINGERPRINT_VERSION, localId, ownKey, new TextEncoder().encode(`${userId}.${d.deviceId}`), key);
      return { deviceId: d.deviceId, safetyNumber: fp.displayableFingerprint().toString(), changed: d.pending !== undefined };
    });
  }
}
