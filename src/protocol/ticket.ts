/**
 * Proxy tickets, v1. The server issues a get client a short-lived ticket; give proxies check it
 * offline against the server's ticket public key (Ed25519), with no server round trip per
 * connection. Wire form (≤ 255 bytes, so it fits a SOCKS5 password):
 *
 *   base64url(JSON claims) "." base64url(Ed25519 signature over the first part)
 *
 * HTTP clients send it as `Proxy-Authorization: Basic base64("ticket:" + TICKET)`; SOCKS5 clients as
 * username `ticket`, password TICKET.
 */
import { z } from 'zod';

export const TICKET_USERNAME = 'ticket';

/** A give peer's identity fingerprint: SHA-256 of its key's SPKI DER, first 16 bytes, base64url. */
export const PeerFingerprint = z.string().regex(/^[A-Za-z0-9_-]{22}$/, 'a give peer fingerprint');

/**
 * A ticket's subject: an opaque pseudonym of the user, new for every ticket (the server encrypts
 * the user id under a random IV), so no give peer can link two tickets, or tell a verifier's from a
 * user's. Only the server can read it back (TicketIssuer.subjectOf).
 */
export const TicketSubject = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'an opaque ticket subject');

export const TicketClaims = z.strictObject({
  v: z.literal(1),
  /** Who it was issued to, as a per-ticket pseudonym (see TicketSubject). */
  sub: TicketSubject,
  /** Expiry, ms since the epoch. */
  exp: z.int().positive(),
  /**
   * What it opens: one give peer (its identity key's fingerprint, the peer's id in ads and the round
   * robin), or `peerjs`: registering an id with the PeerJS broker. Absent: any give peer that does not
   * know its own identity (tests only; `give` always does).
   */
  aud: z.union([z.literal('peerjs'), PeerFingerprint]).optional(),
});
export type TicketClaims = z.infer<typeof TicketClaims>;
export type TicketAudience = 'proxy' | 'peerjs';

/**
 * POST /v1/tickets body: which kind of ticket. A proxy ticket (the default) names the give peer it is
 * for (`peer`: the fingerprint of its identity key, issued as the ticket's `aud`), so that no peer can
 * spend it at another.
 */
export const TicketRequest = z.strictObject({ aud: z.enum(['proxy', 'peerjs']).optional(), peer: PeerFingerprint.optional() });

/** POST /v1/tickets (signed) answer. */
export const TicketResponse = z.strictObject({ ticket: z.string().max(255), expiresAt: z.int() });
export type TicketResponse = z.infer<typeof TicketResponse>;

/** GET /v1/tickets/key: the SPKI PEM of the server's ticket key. */
export const TicketKeyResponse = z.strictObject({ publicKey: z.string().max(1024) });
