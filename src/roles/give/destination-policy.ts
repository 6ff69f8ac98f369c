import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { LanternError } from '../../core/errors.js';

/** Ranges a give proxy never connects to unless told to (so it cannot be used against its own network). */
function privateRanges(): BlockList {
  const list = new BlockList();
  for (const [net, prefix] of [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.0.0.0', 24],
    ['192.168.0.0', 16],
    ['198.18.0.0', 15],
    ['224.0.0.0', 4],
    ['240.0.0.0', 4],
  ] as const) {
    list.addSubnet(net, prefix, 'ipv4');
  }
  for (const [net, prefix] of [
    ['::', 128],
    ['::1', 128],
    ['fc00::', 7],
    ['fe80::', 10],
    ['ff00::', 8],
  ] as const) {
    list.addSubnet(net, prefix, 'ipv6');
  }
  return list;
}

const PRIVATE = privateRanges();

/** Whether an IP literal is in a private, loopback, link-local, multicast or reserved range. */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return PRIVATE.check(mapped[1]!, 'ipv4');
  const family = isIP(address);
  if (family === 0) return false;
  return PRIVATE.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

export type LookupFn = (
  hostname: string,
  options: object,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

/**
 * A DNS lookup for outgoing connections that refuses private destinations: the check happens on
 * the address actually dialled, so a name that resolves to a private address (DNS rebinding) is
 * refused too.
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

/** Refuses an IP-literal destination in a private range (names are checked by the lookup). */
export function checkLiteralDestination(host: string, allowPrivate: boolean): void {
  if (!allowPrivate && isIP(host.replace(/^\[|\]$/g, '')) !== 0 && isPrivateAddress(host.replace(/^\[|\]$/g, ''))) {
    throw new LanternError('LA_ERR_DESTINATION_FORBIDDEN');
  }
}
