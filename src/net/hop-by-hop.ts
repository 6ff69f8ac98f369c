import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/**
 * Header fields that belong to one connection, not to the message (RFC 9110 §7.6.1), and the
 * proxy's own credentials: a proxy drops them, and every field the Connection header names.
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * The end-to-end fields of a message as a proxy forwards them (names lowercase, as Node gives
 * them): the hop-by-hop ones, and those the Connection header lists, removed; `drop` names
 * more to remove (give lets its HTTP client set Host from the target).
 */
export function endToEndHeaders(headers: IncomingHttpHeaders, drop: readonly string[] = []): OutgoingHttpHeaders {
  const named = String(headers['connection'] ?? '')
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.includes(name) || drop.includes(name)) continue;
    out[name] = value;
  }
  return out;
}
