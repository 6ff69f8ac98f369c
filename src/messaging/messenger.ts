import { randomUUID } from 'node:crypto';
import { LanternError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { SignalCipher } from '../crypto/signal/signal-cipher.js';
import type { ApiClient } from '../net/api-client.js';
import type { Address, DeviceMessage, Envelope, SendResponse, SkippedDevice } from '../protocol/messages.js';
import type { Keystore } from '../storage/keystore.js';


const devicesKey = (userId: string) => `sig!devices!${userId}`;

/** What a send reached: the message id, the recipient's devices, our own other devices, and the recipient's devices skipped. */
export interface SentEnvelope {
  id: string;
  devices: number[];
  ownDevices: number[];
  skipped?: SkippedDevice[];
}
const MAX_ATTEMPTS = 4;

/**
 * End-to-end encrypted sending: one ciphertext per registered device of the recipient, and a copy
 * for this user's other devices. The device list is kept per contact and corrected from the
 * server's 409 (missing/extra devices) and 410 (re-registered devices) answers.
 */
export class Messenger {
  readonly #api: ApiClient;
  readonly #keystore: Keystore;
  readonly #cipher: SignalCipher;
  readonly #self: Address;
  readonly #logger: Logger;

  constructor(components: { api: ApiClient; keystore: Keystore; cipher: SignalCipher; logger: Logger }, self: Address) {
    this.#api = components.api;
    this.#keystore = components.keystore;
    this.#cipher = components.cipher;
    this.#self = self;
    this.#logger = components.logger;
  }

  /**
   * Sends `text` to every device of `userId` (and a copy to our other devices); returns the devices
   * reached, and those the server skipped (full queue, the sender's share used, dormant).
   */
  send(userId: string, text: string): Promise<SentEnvelope> {
    return this.sendEnvelope(userId, { v: 1, text });
  }

  /** Sends any envelope (a text, an availability ad) the same way. */
  async sendEnvelope(userId: string, envelope: Envelope, options: { copyToOwnDevices?: boolean } = {}): Promise<SentEnvelope> {
    const plaintext = new TextEncoder().encode(JSON.stringify(envelope));
    const id = randomUUID();
    const sent = await this.#sendToUser(id, userId, plaintext);
    const copy = options.copyToOwnDevices ?? true;
    const own = !copy || userId === this.#self.userId ? { devices: [] } : await this.#sendToUser(randomUUID(), this.#self.userId, plaintext);
    return { id, devices: sent.devices, ownDevices: own.devices, ...(sent.skipped?.length ? { skipped: sent.skipped } : {}) };
  }

  async #knownDevices(userId: string): Promise<number[] | undefined> {
    return this.#keystore.get<number[]>(devicesKey(userId));
  }

  /** Fetches bundles (all registered devices, or the given ones) and builds sessions with them. */
  async #fetch(userId: string, only?: number[]): Promise<number[]> {
    const got: number[] = [];
    const lists = only === undefined ? [await this.#api.bundles(userId)] : await Promise.all(only.map((d) => this.#api.bundles(userId, d)));
    for (const { devices } of lists) {
      for (const bundle of devices) {
        await this.#cipher.processBundle(userId, bundle);
        got.push(bundle.deviceId);
      }
    }
    return got;
  }

  async #sendToUser(id: string, userId: string, plaintext: Uint8Array): Promise<SendResponse> {
    const own = userId === this.#self.userId;
    let devices = (await this.#knownDevices(userId)) ?? (await this.#fetch(userId));
    for (let attempt = 1; ; attempt++) {
      devices = devices.filter((d) => !(own && d === this.#self.deviceId));
      if (devices.length === 0) {
        if (own) return { devices: [] };
        throw new LanternError('LA_ERR_NO_KEYS', 'The recipient has no device with keys');
      }
      const messages: DeviceMessage[] = [];
      for (const deviceId of devices) {
        const remote = { userId, deviceId };
        if (!(await this.#cipher.hasSession(remote))) await this.#fetch(userId, [deviceId]);
        messages.push({ deviceId, ...(await this.#cipher.encrypt(remote, plaintext)) });
      }
      try {
        const answer = await this.#api.send({ id, to: userId, messages });
        await this.#keystore.put(devicesKey(userId), devices);
        if (answer.skipped?.length) this.#logger.info({ skipped: answer.skipped }, 'some devices of the recipient were skipped');
        return answer;
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS) throw err;
        if (LanternError.is(err, 'LA_ERR_DEVICE_MISMATCH')) {
          const { missingDevices = [], extraDevices = [] } = err.details as { missingDevices?: number[]; extraDevices?: number[] };
          this.#logger.info({ missingDevices, extraDevices }, 'device list corrected');
          for (const d of extraDevices) await this.#cipher.dropSession({ userId, deviceId: d });
          await this.#fetch(userId, missingDevices);
          devices = [...devices.filter((d) => !extraDevices.includes(d)), ...missingDevices].sort((a, b) => a - b);
        } else if (LanternError.is(err, 'LA_ERR_STALE_DEVICES')) {
          const { staleDevices = [] } = err.details as { staleDevices?: number[] };
          this.#logger.info({ staleDevices }, 'sessions with re-registered devices rebuilt');
          for (const d of staleDevices) await this.#cipher.dropSession({ userId, deviceId: d });
          await this.#fetch(userId, staleDevices);
        } else {
          throw err;
        }
      }
    }
  }
}
