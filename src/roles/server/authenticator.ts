import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { verifyRequestSignature, sha256Hex } from '../../crypto/request-signature.js';
import { AUTH_WINDOW_MS, AuthFields, canonicalRequest, splitAuthHeader } from '../../protocol/request-auth.js';
import type { ServerStore } from '../../storage/server-store.js';

export interface AuthContext {
  userId: string;
  deviceId: number;
  certificateExpires: number;
}

/**
 * Checks the LA1 signature of a request (see protocol/request-auth.ts): the credential must be the
 * current one of an active device, unexpired, the time within the window, the signature valid for
 * this method, path and body, and the nonce unseen. The nonce is claimed only after the signature
 * verifies, so nobody can burn another device's nonces.
 */
export class Authenticator {
  readonly #store: ServerStore;
  readonly #clock: Clock;

  constructor(components: { store: ServerStore; clock: Clock }) {
    this.#store = components.store;
    this.#clock = components.clock;
  }

  async authenticate(req: { method: string; path: string; authorization: string | undefined; body: Buffer }): Promise<AuthContext> {
    if (!req.authorization) throw new LanternError('LA_ERR_AUTH_REQUIRED');
    const raw = splitAuthHeader(req.authorization);
    const parsed = raw && AuthFields.safeParse(raw);
    if (!parsed || !parsed.success) throw new LanternError('LA_ERR_AUTH_MALFORMED');
    const f = parsed.data;
    const now = this.#clock.now();
    if (Math.abs(now - f.t) > AUTH_WINDOW_MS) {
      throw new LanternError('LA_ERR_AUTH_CLOCK_SKEW', `Request time is ${Math.round((f.t - now) / 1000)} s from the server's clock`);
    }
    const device = await this.#store.getDevice(f.u, f.d);
    if (!device) throw new LanternError('LA_ERR_AUTH_UNKNOWN_CREDENTIAL');
    if (device.revokedAt !== undefined) throw new LanternError('LA_ERR_AUTH_REVOKED');
    if (device.serial !== f.s) {
      // An older certificate of this device (superseded by a renewal) or one from somewhere else.
      throw new LanternError('LA_ERR_AUTH_UNKNOWN_CREDENTIAL');
    }
    if (device.expiresAt <= now) throw new LanternError('LA_ERR_AUTH_EXPIRED');
    const canonical = canonicalRequest({
      method: req.method,
      path: req.path,
      t: f.t,
      n: f.n,
      bodySha256Hex: sha256Hex(req.body),
      u: f.u,
      d: f.d,
      s: f.s,
    });
    if (!verifyRequestSignature(device.publicKeyPem, canonical, f.sig)) throw new LanternError('LA_ERR_AUTH_BAD_SIGNATURE');
    const fresh = await this.#store.claimNonce(`${f.u}:${f.d}:${f.t}:${f.n}`, f.t + AUTH_WINDOW_MS);
    if (!fresh) throw new LanternError('LA_ERR_AUTH_REPLAYED');
    return { userId: f.u, deviceId: f.d, certificateExpires: device.expiresAt };
  }
}
