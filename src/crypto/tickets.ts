import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
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

/** The server side: signs tickets, and names their subjects by pseudonyms only it can read. */
export class TicketIssuer {
  readonly #key: KeyObject;
  /** AES-256 key of the subject pseudonyms, derived from the ticket key (every instance has it). */
  readonly #subjectKey: Buffer;
  readonly publicKeyPem: string;

  constructor(privateKeyPem: string) {
    this.#key = createPrivateKey(privateKeyPem);
    this.publicKeyPem = createPublicKey(this.#key).export({ type: 'spki', format: 'pem' }).toString();
    const secret = this.#key.export({ type: 'pkcs8', format: 'der' });
    this.#subjectKey = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'lantern-agent ticket subject v1', 32));
  }

  /**
   * A fresh pseudonym of a user id (a UUID) for one ticket's `sub`: the id's 16 bytes encrypted with
   * AES-256-CTR under a random 96-bit IV (38 characters). Encryption only hides the id; the ticket's
   * signature protects it.
   */
  pseudonym(userId: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-ctr', this.#subjectKey, Buffer.concat([iv, Buffer.alloc(4)]));
    const id = Buffer.from(userId.replace(/-/g, ''), 'hex');
    return Buffer.concat([iv, cipher.update(id), cipher.final()]).toString('base64url');
  }

  /** The user id behind a pseudonym this issuer made (an operator looking into a peer's report). */
  subjectOf(pseudonym: string): string | undefined {
    const raw = Buffer.from(pseudonym, 'base64url');
    if (raw.length !== 28) return undefined;
    const decipher = createDecipheriv('aes-256-ctr', this.#subjectKey, Buffer.concat([raw.subarray(0, 12), Buffer.alloc(4)]));
    const hex = Buffer.concat([decipher.update(raw.subarray(12)), decipher.final()]).toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
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
