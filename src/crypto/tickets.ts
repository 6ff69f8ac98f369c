import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { LanternError } from '../core/errors.js';
import { isCanonicalBase64url } from './request-signature.js';
import { TicketClaims, type TicketAudience } from '../protocol/ticket.js';

/** Makes a new Ed25519 ticket key pair (PEM). */
export function generateTicketKey(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** `body.signature`: base64url without padding; an Ed25519 signature is 64 bytes (86 characters). */
const TICKET_SHAPE = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{86})$/;

/** The server side: signs tickets. */
export class TicketIssuer {
  readonly #key: KeyObject;
  readonly publicKeyPem: string;

  constructor(privateKeyPem: string) {
    this.#key = createPrivateKey(privateKeyPem);
    this.publicKeyPem = createPublicKey(this.#key).export({ type: 'spki', format: 'pem' }).toString();
  }

  issue(claims: TicketClaims): string {
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${body}.${sign(null, Buffer.from(body), this.#key).toString('base64url')}`;
  }
}

/**
 * The give side: checks tickets offline. A client presents the same ticket on every connection,
 * so signatures already verified are remembered (expiry is still checked each time).
 */
export class TicketVerifier {
  readonly #key: KeyObject;
  readonly #peer: string | undefined;
  readonly #verified = new Map<string, TicketClaims>();

  /** `peer`: a give peer's own fingerprint; proxy tickets must then name it as their `aud`. */
  constructor(publicKeyPem: string, options: { peer?: string } = {}) {
    this.#key = createPublicKey(publicKeyPem);
    this.#peer = options.peer;
  }

  /**
   * The claims of a valid, unexpired ticket for `audience`; LA_ERR_TICKET_INVALID (also for a ticket
   * meant for something else) or LA_ERR_TICKET_EXPIRED otherwise.
   */
  verify(ticket: string, now: number, audience: TicketAudience = 'proxy'): TicketClaims {
    let claims = this.#verified.get(ticket);
    if (claims && claims.exp <= now) {
      this.#verified.delete(ticket);
      throw new LanternError('LA_ERR_TICKET_EXPIRED');
    }
    if (!claims) {
      claims = this.#check(ticket, now);
      if (this.#verified.size >= 10_000) this.#verified.clear();
      this.#verified.set(ticket, claims);
    }
    const kind: TicketAudience = claims.aud === 'peerjs' ? 'peerjs' : 'proxy';
    if (kind !== audience) throw new LanternError('LA_ERR_TICKET_INVALID', `This ticket is for ${kind}, not ${audience}`);
    if (audience === 'proxy' && this.#peer !== undefined && claims.aud !== this.#peer) throw new LanternError('LA_ERR_TICKET_INVALID', 'This ticket is for another give peer');
    return claims;
  }

  #check(ticket: string, now: number): TicketClaims {
    // Canonical encoding only: one string per ticket (Node's base64url decoder skips junk, so a
    // ticket with bytes appended or changed trailing bits would otherwise verify too).
    const m = TICKET_SHAPE.exec(ticket);
    if (!m || ticket.length > 255 || !isCanonicalBase64url(m[1]!) || !isCanonicalBase64url(m[2]!)) throw new LanternError('LA_ERR_TICKET_INVALID');
    const body = m[1]!;
    let ok = false;
    try {
      ok = verify(null, Buffer.from(body), this.#key, Buffer.from(m[2]!, 'base64url'));
    } catch {
      ok = false;
    }
    if (!ok) throw new LanternError('LA_ERR_TICKET_INVALID');
    let claims: TicketClaims;
    try {
      claims = TicketClaims.parse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
    } catch (err) {
      throw new LanternError('LA_ERR_TICKET_INVALID', undefined, { cause: err });
    }
    if (claims.exp <= now) throw new LanternError('LA_ERR_TICKET_EXPIRED');
    return claims;
  }
}
