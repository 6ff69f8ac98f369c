import { LanternError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DeviceKeys } from '../crypto/signal/device-keys.js';
import { KEYS_LOW_WATER } from '../protocol/version.js';
import { MESSAGE_TYPE, type SignalCipher } from '../crypto/signal/signal-cipher.js';
import type { ApiClient } from '../net/api-client.js';
import { Envelope, type Address, type Advertisement, type DeliveredMessage, type IceSignal, type PollResponse } from '../protocol/messages.js';
import type { Keystore } from '../storage/keystore.js';
import type { Contacts } from './contacts.js';
import { messageKey } from './message-store.js';

/** A message as kept in the keystore and shown to the user. */
export interface ReceivedMessage {
  id: string;
  from: Address;
  sentAt: number;
  type: number;
  /** Whether it came end-to-end encrypted (false for --raw sends). */
  encrypted: boolean;
  text?: string;
  /** An availability ad, and what became of it (kept only from contacts, and only unexpired). */
  ad?: Advertisement;
  adStatus?: 'accepted' | 'not-a-contact' | 'expired';
  /**
   * ICE signaling for a WebRTC tunnel, handed to whoever runs the session and never stored: the
   * keystore keeps only `signal` (its kind), so that redeliveries are known, and no home address
   * from a description lands on disk.
   */
  ice?: IceSignal;
  signal?: IceSignal['kind'];
  /** Set when it could not be decrypted; the ciphertext is kept in `payload`. */
  error?: { code: string; message: string };
  payload?: string;
  /** Shown to the user (by `inbox` or `messages`); absent until then. */
  read?: boolean;
}

const key = messageKey;

export interface InboxComponents {
  api: ApiClient;
  keystore: Keystore;
  logger: Logger;
  /** Decrypts ciphertexts; without it only plaintext (type 0) messages are readable. */
  cipher?: SignalCipher;
  /** Tops up one-time keys after prekey messages used some. */
  deviceKeys?: DeviceKeys;
  /** Decides which availability ads to keep. Without it ads are reported and not kept. */
  contacts?: Contacts;
  now?: () => number;
}

/** What the keystore keeps of a message: all of it, but of ICE signaling only its kind (marked read: nobody reads it). */
function storedForm(m: ReceivedMessage): ReceivedMessage {
  if (!m.ice) return m;
  const { ice, ...rest } = m;
  return { ...rest, signal: ice.kind, read: true };
}

/**
 * Takes in polled batches (the receive loop is net/long-poll): decrypts, and stores each new message
 * durably in the keystore; the caller acks the batch once this returns. A redelivered message
 * (same id, or a ciphertext libsignal has already decrypted) is not returned again. A message that
 * cannot be decrypted is stored with its ciphertext and returned with its error (never silently
 * dropped), and the session with that device is rebuilt from a fresh bundle.
 */
export class Inbox {
  readonly #c: InboxComponents;

  constructor(components: InboxComponents) {
    this.#c = components;
  }

  /** Decrypts and stores one polled batch; returns the messages new to this device. */
  async handle(batch: PollResponse): Promise<{ messages: ReceivedMessage[]; more: boolean }> {
    const { keystore, logger } = this.#c;
    const fresh: ReceivedMessage[] = [];
    let usedPreKeys = false;
    for (const m of batch.messages) {
      if ((await keystore.get(key(m.id))) !== undefined || fresh.some((f) => f.id === m.id)) continue;
      // The message and the ratchet state its decryption produced are written together: a crash in
      // between would otherwise lose the message (libsignal then calls the redelivery a duplicate).
      const received = await keystore.transaction(async () => {
        const r = await this.#open(m);
        if (r) await keystore.put(key(m.id), storedForm(r));
        return r;
      });
      if (!received) continue;
      usedPreKeys ||= m.type === MESSAGE_TYPE.preKey;
      fresh.push(received);
    }
    if (fresh.length < batch.messages.length) logger.debug({ duplicates: batch.messages.length - fresh.length }, 'dropped redelivered messages');
    if (usedPreKeys) await this.topUp();
    return { messages: fresh, more: batch.more };
  }

  async #open(m: DeliveredMessage): Promise<ReceivedMessage | undefined> {
    const base = { id: m.id, from: m.from, sentAt: m.sentAt, type: m.type };
    if (m.type === MESSAGE_TYPE.plaintext) {
      return { ...base, encrypted: false, text: Buffer.from(m.payload, 'base64').toString('utf8') };
    }
    try {
      if (!this.#c.cipher) throw new LanternError('LA_ERR_DECRYPT_FAILED', 'This home has no Signal identity; log in again');
      const plain = await this.#c.cipher.decrypt(m.from, m.type, m.payload);
      const parsed = Envelope.safeParse(JSON.parse(new TextDecoder().decode(plain)));
      if (!parsed.success) throw new LanternError('LA_ERR_DECRYPT_FAILED', 'Unknown envelope');
      const envelope = parsed.data;
      if ('text' in envelope) return { ...base, encrypted: true, text: envelope.text };
      if ('ice' in envelope) return { ...base, encrypted: true, ice: envelope.ice };
      const now = this.#c.now?.() ?? Date.now();
      const adStatus = this.#c.contacts ? await this.#c.contacts.acceptAd(m.from, envelope.ad, now) : 'not-a-contact';
      return { ...base, encrypted: true, ad: envelope.ad, adStatus };
    } catch (err) {
      if (LanternError.is(err, 'LA_ERR_DUPLICATE_MESSAGE')) return undefined;
      const e = LanternError.is(err) ? err : new LanternError('LA_ERR_DECRYPT_FAILED', (err as Error).message, { cause: err });
      this.#c.logger.warn({ code: e.code, from: m.from }, 'message could not be decrypted; rebuilding the session');
      await this.#rebuild(m.from);
      return { ...base, encrypted: true, error: { code: e.code, message: e.message }, payload: m.payload };
    }
  }

  /** Forgets the session with a device and builds a new one from a fresh bundle. */
  async #rebuild(remote: Address): Promise<void> {
    const cipher = this.#c.cipher;
    if (!cipher) return;
    try {
      await cipher.dropSession(remote);
      const { devices } = await this.#c.api.bundles(remote.userId, remote.deviceId);
      for (const bundle of devices) await cipher.processBundle(remote.userId, bundle);
    } catch (err) {
      this.#c.logger.warn({ err }, 'could not rebuild the session');
    }
  }

  /**
   * Uploads a new batch of one-time keys if the server has fewer than KEYS_LOW_WATER left: after
   * prekey messages used some, and when a poll answer says they run low (ApiClient.takeKeysLow).
   * A failure is logged, never thrown: receiving goes on.
   */
  async topUp(): Promise<void> {
    const keys = this.#c.deviceKeys;
    if (!keys) return;
    try {
      const counts = await this.#c.api.keyCounts();
      if (counts.preKeys < KEYS_LOW_WATER.preKeys || counts.kyberPreKeys < KEYS_LOW_WATER.kyberPreKeys) {
        await this.#c.api.putKeys(await keys.upload());
        this.#c.logger.info(counts, 'one-time keys topped up');
      }
    } catch (err) {
      this.#c.logger.warn({ err }, 'could not top up one-time keys');
    }
  }
}
