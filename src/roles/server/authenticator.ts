import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { isCanonicalBase64url, sha256Hex, verifyRequestSignature, verifySessionMac } from '../../crypto/request-signature.js';
import {
  AUTH_SCHEME,
  AUTH_WINDOW_MS,
  AuthFields,
  SESSION_AUTH_SCHEME,
  SessionAuthFields,
  canonicalRequest,
  deviceIdentity,
  splitAuthHeader,
} from '../../protocol/request-auth.js';
import type { AccountStore, SessionRecord, SessionStore } from '../../storage/server-store.js';

/** Session records kept in memory (they never change; the store says when one has ended). */
const SESSION_CACHE_SIZE = 20_000;

export interface AuthContext {
  userId: string;
  deviceId: number;
  /** When the credential (or session) behind this request stops being accepted. */
  certificateExpires: number;
  /** LA1 (device key) or LA1S (session). */
  scheme: typeof AUTH_SCHEME | typeof SESSION_AUTH_SCHEME;
}

export interface AuthRequest {
  method: string;
  path: string;
  authorization: string | undefined;
  body: Buffer;
}

/**
 * Checks the LA1 signature or LA1S MAC of a request (see protocol/request-auth.ts). LA1: the
 * credential must be the current one of an active, unexpired device. LA1S: the session must exist
 * and be unexpired (revoking or renewing a device ends its sessions; a session never outlives the
 * certificate). Both: the time within the window, the signature valid for this method, path and
 * body, the nonce unseen. The nonce is claimed only after the signature verifies, so nobody can
 * burn another device's nonces. Session records are cached: the nonce claim checks, in the same
 * step, that the session still exists, so a cached session never outlives a revocation.
 */
export class Authenticator {
  readonly #store: AccountStore & SessionStore;
  readonly #clock: Clock;
  readonly #sessions = new Map<string, SessionRecord>();

  constructor(components: { store: AccountStore & SessionStore; clock: Clock }) {
    this.#store = components.store;
    this.#clock = components.clock;
  }

  async authenticate(req: AuthRequest): Promise<AuthContext> {
    if (!req.authorization) throw new LanternError('LA_ERR_AUTH_REQUIRED');
    const split = splitAuthHeader(req.authorization);
    if (split?.scheme === SESSION_AUTH_SCHEME) return this.#session(req, split.fields);
    if (split?.scheme === AUTH_SCHEME) return this.#device(req, split.fields);
    throw new LanternError('LA_ERR_AUTH_MALFORMED');
  }

  #checkTime(t: number): number {
    const now = this.#clock.now();
    if (Math.abs(now - t) > AUTH_WINDOW_MS) {
      throw new LanternError('LA_ERR_AUTH_CLOCK_SKEW', `Request time is ${Math.round((t - now) / 1000)} s from the server's clock`);
    }
    return now;
  }

  async #claim(device: string, t: number, n: string): Promise<void> {
    if (!(await this.#store.claimNonce(device, n, t + AUTH_WINDOW_MS))) throw new LanternError('LA_ERR_AUTH_REPLAYED');
  }

  async #device(req: AuthRequest, raw: Record<string, string>): Promise<AuthContext> {
    const parsed = AuthFields.safeParse(raw);
    if (!parsed.success || !isCanonicalBase64url(parsed.data.sig)) throw new LanternError('LA_ERR_AUTH_MALFORMED');
    const f = parsed.data;
    const now = this.#checkTime(f.t);
    const device = await this.#store.getDevice(f.u, f.d);
    if (!device) throw new LanternError('LA_ERR_AUTH_UNKNOWN_CREDENTIAL');
    if (device.revokedAt !== undefined) throw new LanternError('LA_ERR_AUTH_REVOKED');
    // An older certificate of this device (superseded by a renewal), or one from somewhere else.
    if (device.serial !== f.s) throw new LanternError('LA_ERR_AUTH_UNKNOWN_CREDENTIAL');
    if (device.expiresAt <= now) throw new LanternError('LA_ERR_AUTH_EXPIRED');
    const canonical = canonicalRequest({
      scheme: AUTH_SCHEME,
      method: req.method,
      path: req.path,
      t: f.t,
      n: f.n,
      bodySha256Hex: sha256Hex(req.body),
      identity: deviceIdentity(f.u, f.d, f.s),
    });
    if (!verifyRequestSignature(device.publicKeyPem, canonical, f.sig)) throw new LanternError('LA_ERR_AUTH_BAD_SIGNATURE');
    await this.#claim(`${f.u}:${f.d}`, f.t, f.n);
    return { userId: f.u, deviceId: f.d, certificateExpires: device.expiresAt, scheme: AUTH_SCHEME };
  }

  async #session(req: AuthRequest, raw: Record<string, string>): Promise<AuthContext> {
    const parsed = SessionAuthFields.safeParse(raw);
    if (!parsed.success || !isCanonicalBase64url(parsed.data.mac)) throw new LanternError('LA_ERR_AUTH_MALFORMED');
    const f = parsed.data;
    const now = this.#checkTime(f.t);
    const session = await this.#cachedSession(f.id, now);
    if (!session) throw new LanternError('LA_ERR_AUTH_SESSION_EXPIRED');
    const canonical = canonicalRequest({
      scheme: SESSION_AUTH_SCHEME,
      method: req.method,
      path: req.path,
      t: f.t,
      n: f.n,
      bodySha256Hex: sha256Hex(req.body),
      identity: f.id,
    });
    if (!verifySessionMac(session.key, canonical, f.mac)) throw new LanternError('LA_ERR_AUTH_BAD_SIGNATURE');
    const claimed = await this.#store.claimSessionNonce(f.id, f.n, f.t + AUTH_WINDOW_MS, now);
    if (claimed === 'ended') {
      this.#sessions.delete(f.id);
      throw new LanternError('LA_ERR_AUTH_SESSION_EXPIRED');
    }
    if (claimed === 'replayed') throw new LanternError('LA_ERR_AUTH_REPLAYED');
    return { userId: session.userId, deviceId: session.deviceId, certificateExpires: session.expiresAt, scheme: SESSION_AUTH_SCHEME };
  }

  async #cachedSession(id: string, now: number): Promise<SessionRecord | undefined> {
    let session = this.#sessions.get(id);
    if (!session) {
      session = await this.#store.getSession(id, now);
      if (!session) return undefined;
      if (this.#sessions.size >= SESSION_CACHE_SIZE) this.#sessions.delete(this.#sessions.keys().next().value!);
      this.#sessions.set(id, session);
    }
    if (session.expiresAt > now) return session;
    this.#sessions.delete(id);
    return undefined;
  }
}
