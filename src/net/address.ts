import ipaddr from 'ipaddr.js';

/**
 * The network a client address belongs to, as a key for limits: the address masked to `v4` bits
 * (IPv4, also when written IPv4-mapped) or `v6` bits (IPv6), e.g. `192.0.2.0/24`,
 * `2001:db8:aa:bb00::/56`. A censor or a single subscriber holds a whole IPv6 /64 (or /56), so
 * IPv6 clients are counted by network, never by address. Anything unparsable is its own key.
 */
export function networkKey(address: string, bits: { v4: number; v6: number }): string {
  let ip: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    ip = ipaddr.process(address.replace(/^\[|\]$/g, '').split('%')[0]!);
  } catch {
    return address;
  }
  if (ip.kind() === 'ipv4') {
    return `${ipaddr.IPv4.networkAddressFromCIDR(`${ip.toString()}/${bits.v4}`).toString()}/${bits.v4}`;
  }
  return `${ipaddr.IPv6.networkAddressFromCIDR(`${ip.toString()}/${bits.v6}`).toString()}/${bits.v6}`;
}
