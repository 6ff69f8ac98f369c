/**
 * Request authentication, v1 ("LA1"). A device signs every request with the private key of the
 * certificate the server issued at login. The signature travels in the Authorization header, so it
 * survives TLS-terminating proxies and CDNs (unlike mutual TLS):
 *
 *   Authorization: LA1 u=<userId>,d=<deviceId>,s=<certSerialHex>,t=<unixMs>,n=<nonce>,sig=<base64url>
 *
 * The signed text is the canonical string below. The server accepts a timestamp within
 * ±AUTH_WINDOW_MS of its clock and each (device, t, nonce) once, which refuses replays.
 */
import { z } from 'zod';
import { DeviceId, UserId } from './messages.js';

export const AUTH_SCHEME = 'LA1';
export const AUTH_WINDOW_MS = 120_000;

export const AuthFields = z.strictObject({
  u: UserId,
  d: z.coerce.number().pipe(DeviceId),
  s: z.string().regex(/^[0-9a-f]{2,64}$/),
  t: z.coerce.number().int().positive(),
  n: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/),
  sig: z.string().regex(/^[A-Za-z0-9_-]{16,1024}$/),
});
export type AuthFields = z.infer<typeof AuthFields>;

/** Splits the header into raw fields; `undefined` when the scheme is not LA1. */
export function splitAuthHeader(header: string): Record<string, string> | undefined {
  const space = header.indexOf(' ');
  if (space < 0 || header.slice(0, space) !== AUTH_SCHEME) return undefined;
  const fields: Record<string, string> = {};
  for (const part of header.slice(space + 1).split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    fields[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return fields;
}

export function formatAuthHeader(f: AuthFields): string {
  return `${AUTH_SCHEME} u=${f.u},d=${f.d},s=${f.s},t=${f.t},n=${f.n},sig=${f.sig}`;
}

/** The exact text a device signs: binds method, path with query, time, nonce, body and identity. */
export function canonicalRequest(p: {
  method: string;
  path: string;
  t: number;
  n: string;
  bodySha256Hex: string;
  u: string;
  d: number;
  s: string;
}): string {
  return [AUTH_SCHEME, p.method.toUpperCase(), p.path, String(p.t), p.n, p.bodySha256Hex, p.u, String(p.d), p.s].join('\n');
}
