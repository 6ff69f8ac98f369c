import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';
import { LanternError } from '../../core/errors.js';

/**
 * Which destinations a give proxy may dial, so that it cannot be turned against its own network
 * or used to reach infrastructure addresses: only ordinary unicast addresses.
 *
 * The table is the IANA IPv4 and IPv6 Special-Purpose Address Registries (and the multicast
 * ranges), as ipaddr.js names them: every range it names other than `unicast` is refused, the
 * globally reachable infrastructure entries (AS112, AMT, relays, anycast services) included. On
 * top of that, any IPv6 address outside 2000::/3 (global unicast) is refused: the rest of the
 * IPv6 space is reserved or special (::/96 IPv4-compatible, 100::/64 discard, …), whatever a
 * library's table says. Two IPv6 forms carry an IPv4 address that is what is really reached:
 * IPv4-mapped (::ffff:0:0/96) and the NAT64 well-known prefix (64:ff9b::/96, RFC 6052). Those
 * are judged by the embedded IPv4 address, so 64:ff9b::7f00:1 (127.0.0.1 through a NAT64) is
 * refused and 64:ff9b::808:808 is not. 6to4, Teredo, the local-use NAT64 prefix 64:ff9b:1::/48
 * and IPv4-translated addresses are refused outright.
 */

/** The registry name of the range an address is in (`unicast` for an ordinary address). */
export function addressRange(address: string): string {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.parse(address.replace(/^\[|\]$/g, '').split('%')[0]!);
  } catch {
    return 'invalid';
  }
  if (ip.kind() === 'ipv4') return (ip as ipaddr.IPv4).range();
  const v6 = ip as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return embedded(v6.toIPv4Address());
  // The well-known NAT64 prefix: 64:ff9b::/96, the IPv4 address in the last 32 bits.
  const p = v6.parts;
  if (p[0] === 0x64 && p[1] === 0xff9b && p[2] === 0 && p[3] === 0 && p[4] === 0 && p[5] === 0) {
    return embedded(new ipaddr.IPv4([p[6]! >> 8, p[6]! & 0xff, p[7]! >> 8, p[7]! & 0xff]));
  }
  const range = v6.range();
  if (range !== 'unicast') return range;
  // Outside 2000::/3 nothing is an ordinary global unicast address.
  return (p[0]! & 0xe000) === 0x2000 ? 'unicast' : 'reserved';
}

function embedded(v4: ipaddr.IPv4): string {
  const range = v4.range();
  return range === 'unicast' ? 'unicast' : `embedded-${range}`;
}

/** Whether an IP literal is anything but an ordinary unicast address (see the module comment). */
export function isPrivateAddress(address: string): boolean {
  if (isIP(address.replace(/^\[|\]$/g, '').split('%')[0]!) === 0) return false;
  return addressRange(address) !== 'unicast';
}

export type LookupFn = (
  hostname: string,
  options: object,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

/**
 * A DNS lookup for outgoing connections that refuses special-purpose destinations: the check
 * happens on the address actually dialled, so a name that resolves to a private address (DNS
 * rebinding) is refused too.
 */
export function guardedLookup(allowPrivate: boolean): LookupFn {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: false }, (err, address, family) => {
      if (err) return callback(err, '', 0);
      if (!allowPrivate && isPrivateAddress(address)) {
        const e = new LanternError('LA_ERR_DESTINATION_FORBIDDEN') as unknown as NodeJS.ErrnoException;
        return callback(e, '', 0);
      }
      const opts = options as { all?: boolean };
      if (opts.all) return callback(null, [{ address, family }]);
      callback(null, address, family);
    });
  };
}

/** Refuses an IP-literal destination in a special-purpose range (names are checked by the lookup). */
export function checkLiteralDestination(host: string, allowPrivate: boolean): void {
  if (!allowPrivate && isPrivateAddress(host)) throw new LanternError('LA_ERR_DESTINATION_FORBIDDEN');
}
