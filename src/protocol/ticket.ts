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
import { UserId } from './messages.js';

export const TICKET_USERNAME = 'ticket';

export const TicketClaims = z.strictObject({
  v: z.literal(1),
  /** The get client's user id. */
  sub: UserId,
  /** Expiry, ms since the epoch. */
  exp: z.int().positive(),
  /** What it is good for: give proxies (when absent) or registering an id with the PeerJS broker. */
  aud: z.enum(['proxy', 'peerjs']).optional(),
});
export type TicketClaims = z.infer<typeof TicketClaims>;
export type TicketAudience = 'proxy' | 'peerjs';

/** POST /v1/tickets body (optional): which kind of ticket. */
export const TicketRequest = z.strictObject({ aud: z.enum(['proxy', 'peerjs']).optional() });

/** POST /v1/tickets (signed) answer. */
export const TicketResponse = z.strictObject({ ticket: z.string().max(255), expiresAt: z.int() });
export type TicketResponse = z.infer<typeof TicketResponse>;

/** GET /v1/tickets/key: the SPKI PEM of the server's ticket key. */
export const TicketKeyResponse = z.strictObject({ publicKey: z.string().max(1024) });
