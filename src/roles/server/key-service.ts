import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Address, DeviceBundle, KeysUpload } from '../../protocol/messages.js';
import { KEYS_LOW_WATER } from '../../protocol/version.js';
import { checkKeysUpload } from '../../crypto/signal/key-signatures.js';
import type { AccountStore, KeyStore, LimitStore } from '../../storage/server-store.js';
import type { ServerOptions } from './options.js';

/** What key distribution reads and writes. */
type KeyServiceStore = KeyStore & LimitStore & Pick<AccountStore, 'getDevice' | 'listDevices'>;

/** How long this process trusts its last look at a device's key counts (another process may hand keys out meanwhile). */
const KEYS_LOW_CHECK_MS = 60_000;

/**
 * Signal key distribution: a device uploads its own keys; others fetch bundles, each fetch popping
 * one one-time prekey. Fetches are rate limited per requesting device and target device, and the
 * one-time keys a target device hands out, whoever asks, have a budget of their own: beyond it
 * bundles come without them (the signed and last-resort keys still make a session), so that many
 * requesting devices together cannot drain a victim's keys either. The owner learns on its polls
 * that its keys run low (keysLow).
 */
export class KeyService {
  readonly #c: { store: KeyServiceStore; clock: Clock };
  readonly #options: ServerOptions;
  /** This process's last look at each device's key counts: whether they were low, until when trusted. */
  readonly #low = new Map<string, { low: boolean; until: number }>();

  constructor(components: { store: KeyServiceStore; clock: Clock }, options: ServerOptions) {
    this.#c = components;
    this.#options = options;
  }

  /** Stores a device's keys (signatures checked); answers with its one-time key counts. */
  async upload(device: Address, upload: KeysUpload) {
    checkKeysUpload(upload);
    await this.#c.store.putKeys(device, upload);
    this.#low.delete(`${device.userId}:${device.deviceId}`);
    return this.#c.store.keyCounts(device);
  }

  /**
   * Whether the device has fewer one-time keys left than KEYS_LOW_WATER, looked up at most once a
   * minute per device: a boolean when known, a promise when it has to look.
   */
  keysLow(device: Address): boolean | Promise<boolean> {
    const key = `${device.userId}:${device.deviceId}`;
    const now = this.#c.clock.now();
    const known = this.#low.get(key);
    if (known && known.until > now) return known.low;
    return this.#lookUpKeysLow(device, key, now);
  }

  async #lookUpKeysLow(device: Address, key: string, now: number): Promise<boolean> {
    const counts = await this.#c.store.keyCounts(device);
    const low = counts.preKeys < KEYS_LOW_WATER.preKeys || counts.kyberPreKeys < KEYS_LOW_WATER.kyberPreKeys;
    if (this.#low.size >= 100_000) this.#low.clear();
    this.#low.set(key, { low, until: now + KEYS_LOW_CHECK_MS });
    return low;
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
      const bundle = device && device.revokedAt === undefined ? await this.#take({ userId, deviceId }, now) : undefined;
      if (bundle) devices.push(bundle);
      else if (only !== undefined) throw new LanternError('LA_ERR_NO_KEYS');
    }
    return { userId, devices };
  }

  /** A target device's bundle: with one-time keys while its budget lasts, else without. */
  async #take(target: Address, now: number): Promise<DeviceBundle | undefined> {
    const budget = await this.#c.store.takeTokens(`prekey-target:${target.userId}:${target.deviceId}`, 1, this.#options.rate.prekeyTarget, now);
    this.#low.delete(`${target.userId}:${target.deviceId}`);
    return this.#c.store.takeBundle(target, { oneTime: budget.ok });
  }
}
