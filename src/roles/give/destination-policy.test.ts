import test from 'ava';
import ipaddr from 'ipaddr.js';
import { LanternError } from '../../core/errors.js';
import { addressRange, checkLiteralDestination, isPrivateAddress } from './destination-policy.js';

// The IANA IPv4 and IPv6 Special-Purpose Address Registries, entry by entry (as of 2025), plus the
// multicast ranges and the deprecated IPv6 forms the registry no longer lists. Every address in
// every one of them must be refused.
const IANA_IPV4 = [
  '0.0.0.0/8', '0.0.0.0/32', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16', '172.16.0.0/12',
  '192.0.0.0/24', '192.0.0.0/29', '192.0.0.8/32', '192.0.0.9/32', '192.0.0.10/32', '192.0.0.170/32', '192.0.0.171/32',
  '192.0.2.0/24', '192.31.196.0/24', '192.52.193.0/24', '192.88.99.0/24', '192.88.99.2/32', '192.168.0.0/16',
  '192.175.48.0/24', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24', '240.0.0.0/4', '255.255.255.255/32',
  '224.0.0.0/4',
];
const IANA_IPV6 = [
  '::1/128', '::/128', '::ffff:0:0/96', '64:ff9b:1::/48', '100::/64', '100:0:0:1::/64', '2001::/23', '2001::/32',
  '2001:1::1/128', '2001:1::2/128', '2001:1::3/128', '2001:2::/48', '2001:3::/32', '2001:4:112::/48', '2001:10::/28',
  '2001:20::/28', '2001:30::/28', '2001:db8::/32', '2002::/16', '2620:4f:8000::/48', '3fff::/20', '5f00::/16',
  'fc00::/7', 'fe80::/10', 'ff00::/8', 'fec0::/10', '::/96', '::ffff:0:0:0/96',
];

/** First, last and middle address of a prefix. */
function samples(cidr: string): string[] {
  const [ip, bits] = ipaddr.parseCIDR(cidr);
  if (ip.kind() === 'ipv4') {
    const first = ipaddr.IPv4.networkAddressFromCIDR(cidr).toByteArray();
    const last = ipaddr.IPv4.broadcastAddressFromCIDR(cidr).toByteArray();
    const mid = first.map((b, i) => (b + last[i]!) >> 1);
    return [first, last, mid].map((o) => o.join('.'));
  }
  const first = ipaddr.IPv6.networkAddressFromCIDR(cidr).toByteArray();
  const last = ipaddr.IPv6.broadcastAddressFromCIDR(cidr).toByteArray();
  const mid = first.map((b, i) => (b + last[i]!) >> 1);
  void bits;
  return [first, last, mid].map((b) => (ipaddr.fromByteArray(b) as ipaddr.IPv6).toNormalizedString());
}

test('every address of every IANA special-purpose entry is refused, IPv4 and IPv6', (t) => {
  for (const cidr of [...IANA_IPV4, ...IANA_IPV6]) {
    for (const address of samples(cidr)) {
      t.true(isPrivateAddress(address), `${address} (in ${cidr}) must be refused, range ${addressRange(address)}`);
    }
  }
});

test('IPv4-embedded IPv6 forms are judged by the IPv4 address actually reached', (t) => {
  for (const refused of ['64:ff9b::7f00:1', '64:ff9b::a00:1', '64:ff9b::c0a8:101', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '[::ffff:169.254.169.254]', '::127.0.0.1']) {
    t.true(isPrivateAddress(refused), refused);
  }
  for (const allowed of ['64:ff9b::808:808', '::ffff:8.8.8.8', '::ffff:1.1.1.1']) t.false(isPrivateAddress(allowed), allowed);
});

test('ordinary addresses right next to special ranges are allowed', (t) => {
  for (const ok of ['8.8.8.8', '1.1.1.1', '100.63.255.255', '100.128.0.0', '192.0.1.255', '192.0.3.0', '198.17.255.255', '198.20.0.0', '223.255.255.255', '172.32.0.0', '2606:4700::1111', '2a00:1450::1', '2001:200::1']) {
    t.false(isPrivateAddress(ok), ok);
  }
  t.false(isPrivateAddress('example.org'), 'names are checked by the lookup, on the address dialled');
});

test('literal destinations in brackets, with zones, or in special ranges throw LA_ERR_DESTINATION_FORBIDDEN', (t) => {
  for (const host of ['[::1]', 'fe80::1%lo', '[64:ff9b::7f00:1]', '198.18.0.1', '2002:7f00:1::1']) {
    const err = t.throws(() => checkLiteralDestination(host, false));
    t.true(LanternError.is(err, 'LA_ERR_DESTINATION_FORBIDDEN'), host);
    t.notThrows(() => checkLiteralDestination(host, true), 'unless private destinations are allowed');
  }
});
