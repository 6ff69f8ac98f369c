import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Address, DeviceBundle, KeysUpload } from '../../protocol/messages.js';
import { checkKeysUpload } from '../../crypto/signal/key-signatures.js';
import type { AccountStore, KeyStore, LimitStore } from '../../storage/server-store.js';

/** What key distribution reads and writes. */
type KeyServiceStore = KeyStore & LimitStore & Pick<AccountStore, 'getDevice' | 'listDevices'>;
import type { ServerOptions } from './options.js';

/**
 * Signal key distribution: a device uploads its own keys; others fetch bundles, each fetch popping
 * one one-time prekey (rate limited per requesting device and target device, so that nobody drains
 * a victim's prekeys quickly).
 */
export class KeyService {
  readonly #c: { store: KeyServiceStore; clock: Clock };
  readonly #options: ServerOptions;

  constructor(components: { store: KeyServiceStore; clock: Clock }, options: ServerOptions) {
    this.#c = components;
    this.#options = options;
  }

  /** Stores a device's keys (signatures checked); answers with its one-time key counts. */
  async upload(device: Address, upload: KeysUpload) {
    checkKeysUpload(upload);
    await this.#c.store.putKeys(device, upload);
    return this.#c.store.keyCounts(device);
  }

  /**
   * Bundles for `userId`: of one device (`only`), or of every registered device but the requester
   * itself. LA_ERR_RECIPIENT_NOT_FOUND for a user with no device, LA_ERR_NO_KEYS for a device
   * asked by number that has none, LA_ERR_RATE_LIMITED beyond the fetch rate.
   */
  async bundles(requester: Address, userId: string, only?: number): Promise<{ userId: string; devices: DeviceBundle[] }> {
    const { store, clock } = this.#c;
    const targets =
      only !== undefined
        ? [only]
        : (await store.registrations(userId)).map((r) => r.deviceId).filter((d) => !(userId === requester.userId && d === requester.deviceId));
    if (only === undefined && targets.length === 0 && (await store.listDevices(userId)).length === 0) {
      throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such user');
    }
    const now = clock.now();
    for (const deviceId of targets) {
      const r = await store.takeTokens(`prekeys:${requester.userId}:${requester.deviceId}>${userId}:${deviceId}`, 1, this.#options.rate.prekeyFetch, now);
      if (!r.ok) throw new LanternError('LA_ERR_RATE_LIMITED', 'Too many key fetches for this device', { details: { retryAfterMs: r.retryAfterMs } });
    }
    const devices: DeviceBundle[] = [];
    for (const deviceId of targets) {
      const device = await store.getDevice(userId, deviceId);
      const bundle = device && device.revokedAt === undefined ? await store.takeBundle({ userId, deviceId }) : undefined;
      if (bundle) devices.push(bundle);
      else if (only !== undefined) throw new LanternError('LA_ERR_NO_KEYS');
    }
    return { userId, devices };
  }
}
