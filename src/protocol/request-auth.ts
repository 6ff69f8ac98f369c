/**
 * Request authentication, v1. Two schemes, both carried in the Authorization header so they survive
 * TLS-terminating proxies and CDNs (unlike mutual TLS):
 *
 * LA1 — signed with the device key certified at login (RSA-SHA256):
 *   Authorization: LA1 u=<userId>,d=<deviceId>,s=<certSerialHex>,t=<unixMs>,n=<nonce>,sig=<base64url>
 *
 * LA1S — a session opened by an LA1-signed `POST /v1/session`: client and server each send an
 * ephemeral X25519 public key and derive a shared HMAC key (HKDF-SHA256), so the key itself never
 * crosses the wire and a CDN that sees the traffic cannot forge requests. Every later request is
 * MACed with it (HMAC-SHA256), which costs microseconds instead of an RSA signature:
 *   Authorization: LA1S id=<sessionId>,t=<unixMs>,n=<nonce>,mac=<base64url>
 *
 * Both sign the canonical string below. The server accepts a time within ±AUTH_WINDOW_MS of its
 * clock and each (identity, t, nonce) once, which refuses replays.
 */
import { z } from 'zod';
import { DeviceId, UserId } from './messages.js';

export const AUTH_SCHEME = 'LA1';
export const SESSION_AUTH_SCHEME = 'LA1S';
export const AUTH_WINDOW_MS = 120_000;
/** HKDF info string binding derived session keys to this protocol. */
export const SESSION_KEY_INFO = 'lantern-agent session v1';

const Time = z.coerce.number().int().positive();
const Nonce = z.string().regex(/^[A-Za-z0-9_-]{16,64}$/);

export const AuthFields = z.strictObject({
  u: UserId,
  d: z.coerce.number().pipe(DeviceId),
  s: z.string().regex(/^[0-9a-f]{2,64}$/),
  t: Time,
  n: Nonce,
  sig: z.string().regex(/^[A-Za-z0-9_-]{16,1024}$/),
});
export type AuthFields = z.infer<typeof AuthFields>;

export const SessionAuthFields = z.strictObject({
  id: z.uuid(),
  t: Time,
  n: Nonce,
  mac: z.string().regex(/^[A-Za-z0-9_-]{43}$/),
});
export type SessionAuthFields = z.infer<typeof SessionAuthFields>;

/**
 * Splits the header into its scheme and raw fields; `undefined` when it is not of that shape (a
 * field given twice included, so that one header has one meaning).
 */
export function splitAuthHeader(header: string): { scheme: string; fields: Record<string, string> } | undefined {
  const space = header.indexOf(' ');
  if (space < 0 || header.length > 4096) return undefined;
  const fields: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const part of header.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    // Exactly as formatAuthHeader writes it: no spaces around names and values.
    const name = part.slice(0, eq);
    if (Object.hasOwn(fields, name) || /\s/.test(part)) return undefined;
    fields[name] = part.slice(eq + 1);
  }
  return { scheme: header.slice(0, space), fields };
}


export function formatAuthHeader(f: AuthFields): string {
  return `${AUTH_SCHEME} u=${f.u},d=${f.d},s=${f.s},t=${f.t},n=${f.n},sig=${f.sig}`;
}

export function formatSessionAuthHeader(f: SessionAuthFields): string {
  return `${SESSION_AUTH_SCHEME} id=${f.id},t=${f.t},n=${f.n},mac=${f.mac}`;
}

/**
 * The exact text signed (LA1) or MACed (LA1S): binds scheme, method, path with query, time, nonce,
 * body and identity (`identity` is `<userId>\n<deviceId>\n<serial>` for LA1, the session id for LA1S).
 */
export function canonicalRequest(p: {
  scheme: string;
  method: string;
  path: string;
  t: number;
  n: string;
  bodySha256Hex: string;
  identity: string;
}): string {
  return [p.scheme, p.method.toUpperCase(), p.path, String(p.t), p.n, p.bodySha256Hex, p.identity].join('\n');
}

export const deviceIdentity = (u: string, d: number, s: string) => `${u}\n${d}\n${s}`;
