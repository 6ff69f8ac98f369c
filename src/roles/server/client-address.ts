import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import ipaddr from 'ipaddr.js';
import { LanternError } from '../../core/errors.js';
import { networkKey } from '../../net/address.js';

export interface ClientAddressOptions {
  /** Proxies (CDN edges, a local nginx) whose address header is believed: CIDRs or addresses. */
  trustProxy: readonly string[];
  /** The header they set: X-Forwarded-For (default), CF-Connecting-IP, or Forwarded (RFC 7239). */
  header: string;
  /** Per-address limits count networks of this many bits (IPv4 /24, IPv6 /56 by default). */
  prefix: { v4: number; v6: number };
}

export const defaultClientAddressOptions: ClientAddressOptions = { trustProxy: [], header: 'X-Forwarded-For', prefix: { v4: 24, v6: 56 } };

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses `--trust-proxy` entries (CIDR or a bare address); LA_ERR_CONFIG naming a bad one. */
export function parseTrustedRanges(entries: readonly string[]): Range[] {
  return entries.map((entry): Range => {
    try {
      if (entry.includes('/')) return ipaddr.parseCIDR(entry);
      const ip = ipaddr.parse(entry);
      return [ip, ip.kind() === 'ipv4' ? 32 : 128];
    } catch {
      throw new LanternError('LA_ERR_CONFIG', `--trust-proxy ${entry}: expected an address or a CIDR such as 10.0.0.0/8 or 2001:db8::/32`);
    }
  });
}

/** An address as one form: IPv4-mapped IPv6 as IPv4, no brackets, no zone; undefined if it is none. */
function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  try {
    return ipaddr.process(text.trim().replace(/^\[|\]$/g, '').split('%')[0]!);
  } catch {
    return undefined;
  }
}

/** The hops a header lists, nearest the client first (ports and quotes removed). */
function hops(header: string, value: string): string[] {
  if (header === 'forwarded') {
    // RFC 7239: `for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https`
    return value.split(',').flatMap((element) => {
      const m = /(?:^|;)\s*for\s*=\s*("?)([^";,]*)\1/i.exec(element);
      if (!m) return [];
      const v = m[2]!.trim();
      const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(v);
      if (bracketed) return [bracketed[1]!];
      return [/^[^:]+:\d+$/.test(v) ? v.slice(0, v.lastIndexOf(':')) : v];
    });
  }
  return value.split(',').map((h) => h.trim()).filter(Boolean);
}

/**
 * Who a request comes from. The socket's peer, unless that peer is a trusted proxy: then the
 * header it sets, read from the right, skipping trusted hops, and the first hop that is not
 * trusted is the client (what a client writes into the header itself sits further left and is
 * never reached). A request from an untrusted peer is its peer, whatever headers it sends.
 */
export class ClientAddresses {
  readonly #trusted: Range[];
  readonly #header: string;
  readonly #prefix: { v4: number; v6: number };
  readonly #key: Buffer;

  /** `key` keys the hash that names networks in limit keys (a secret of the data dir). */
  constructor(options: ClientAddressOptions, key: Buffer) {
    this.#trusted = parseTrustedRanges(options.trustProxy);
    this.#header = options.header.toLowerCase();
    this.#prefix = options.prefix;
    this.#key = key;
  }

  #isTrusted(ip: ipaddr.IPv4 | ipaddr.IPv6): boolean {
    return this.#trusted.some(([range, bits]) => range.kind() === ip.kind() && ip.match([range, bits] as never));
  }

  /** The client's address (IPv4 as dotted quad, also when the socket says ::ffff:…). */
  of(req: IncomingMessage): string {
    const peer = parseAddress(req.socket.remoteAddress ?? '');
    if (!peer) return req.socket.remoteAddress ?? '';
    if (this.#trusted.length === 0 || !this.#isTrusted(peer)) return peer.toString();
    const raw = req.headers[this.#header];
    const value = Array.isArray(raw) ? raw.join(',') : raw;
    if (!value) return peer.toString();
    const list = hops(this.#header, value);
    for (let i = list.length - 1; i >= 0; i--) {
      const hop = parseAddress(list[i]!);
      // A hop that is no address (`unknown`, garbage) ends the walk: the proxy is what is known.
      if (!hop) return peer.toString();
      if (!this.#isTrusted(hop)) return hop.toString();
    }
    return parseAddress(list[0]!)?.toString() ?? peer.toString();
  }

  /**
   * The key per-address limits count under: a keyed hash of the client's network (IPv4 /24, IPv6
   * /56 unless configured), so that neither the address nor the network is written to a store.
   */
  limitKey(address: string): string {
    return createHmac('sha256', this.#key).update(networkKey(address, this.#prefix)).digest('base64url').slice(0, 22);
  }
}
