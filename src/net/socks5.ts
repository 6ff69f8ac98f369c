import { LanternError } from '../core/errors.js';
import type { ParseStep } from './handshake-reader.js';

/**
 * SOCKS5 (RFC 1928/1929): constants, and the handshake as incremental parse steps (pure functions
 * over the bytes received so far, run by a HandshakeReader), shared by give and get.
 */
export const SOCKS = { version: 5, noAuth: 0, userPass: 2, noAcceptable: 0xff, connect: 1, ipv4: 1, domain: 3, ipv6: 4 } as const;
export const SOCKS_REPLY = { ok: 0, failure: 1, notAllowed: 2, networkUnreachable: 3, hostUnreachable: 4, refused: 5, commandNotSupported: 7, addressNotSupported: 8 } as const;

/** Longest SOCKS5 message of the handshake (a request with a 255-byte name, or a user/pass message). */
export const SOCKS_MAX_MESSAGE = 513;

export function socksReply(code: number): Buffer {
  return Buffer.from([SOCKS.version, code, 0, SOCKS.ipv4, 0, 0, 0, 0, 0, 0]);
}

const malformed = (what: string) => new LanternError('LA_ERR_PROTOCOL', `Malformed SOCKS5 ${what}`);

/** The greeting: version and the methods the client offers. */
export const socksGreeting: ParseStep<{ version: number; methods: Buffer }> = (b) => {
  if (b.length < 2) return undefined;
  const count = b[1]!;
  if (b.length < 2 + count) return undefined;
  return { value: { version: b[0]!, methods: Buffer.from(b.subarray(2, 2 + count)) }, used: 2 + count };
};

/** Username/password authentication (RFC 1929). */
export const socksUserPass: ParseStep<{ user: Buffer; password: Buffer }> = (b) => {
  if (b.length >= 1 && b[0] !== 1) throw malformed('username/password version');
  if (b.length < 2) return undefined;
  const ulen = b[1]!;
  if (b.length < 3 + ulen) return undefined;
  const plen = b[2 + ulen]!;
  if (b.length < 3 + ulen + plen) return undefined;
  return { value: { user: Buffer.from(b.subarray(2, 2 + ulen)), password: Buffer.from(b.subarray(3 + ulen, 3 + ulen + plen)) }, used: 3 + ulen + plen };
};

export type SocksRequest = { host: string; port: number } | { refuse: number };

/**
 * The request after the method negotiation: the CONNECT target, or the reply code to end the
 * connection with (another command; an unknown address type, whose length cannot be known).
 */
export const socksRequest: ParseStep<SocksRequest> = (b) => {
  if (b.length >= 1 && b[0] !== SOCKS.version) throw malformed('request version');
  if (b.length < 4) return undefined;
  const cmd = b[1]!;
  const atyp = b[3]!;
  let host: string;
  let end: number;
  if (atyp === SOCKS.ipv4) {
    end = 4 + 4;
    if (b.length < end + 2) return undefined;
    host = [...b.subarray(4, end)].join('.');
  } else if (atyp === SOCKS.ipv6) {
    end = 4 + 16;
    if (b.length < end + 2) return undefined;
    host = b.subarray(4, end).toString('hex').replace(/(.{4})(?!$)/g, '$1:');
  } else if (atyp === SOCKS.domain) {
    if (b.length < 5) return undefined;
    end = 5 + b[4]!;
    if (b.length < end + 2) return undefined;
    host = b.subarray(5, end).toString('latin1');
    if (host.length === 0 || !/^[\x21-\x7e]+$/.test(host)) return { value: { refuse: SOCKS_REPLY.hostUnreachable }, used: end + 2 };
  } else {
    return { value: { refuse: SOCKS_REPLY.addressNotSupported }, used: 4 };
  }
  const port = b.readUInt16BE(end);
  if (cmd !== SOCKS.connect) return { value: { refuse: SOCKS_REPLY.commandNotSupported }, used: end + 2 };
  return { value: { host, port }, used: end + 2 };
};

/** The first byte, without using it: SOCKS5 starts with 5, HTTP with a method name. */
export const firstByte: ParseStep<number> = (b) => (b.length ? { value: b[0]!, used: 0 } : undefined);

/** A client's CONNECT request for `target` (an IP literal as such, anything else as a name). */
export function socksRequestBytes(target: { host: string; port: number }): Buffer {
  const port = Buffer.from([target.port >> 8, target.port & 0xff]);
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(target.host);
  if (v4) return Buffer.concat([Buffer.from([SOCKS.version, SOCKS.connect, 0, SOCKS.ipv4, ...v4.slice(1).map(Number)]), port]);
  if (target.host.includes(':')) {
    const [head = '', tail = ''] = target.host.split('::');
    const left = head ? head.split(':') : [];
    const right = tail ? tail.split(':') : [];
    const groups = target.host.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
    const bytes = Buffer.alloc(16);
    groups.forEach((g, i) => bytes.writeUInt16BE(parseInt(g, 16), i * 2));
    return Buffer.concat([Buffer.from([SOCKS.version, SOCKS.connect, 0, SOCKS.ipv6]), bytes, port]);
  }
  const name = Buffer.from(target.host, 'latin1');
  return Buffer.concat([Buffer.from([SOCKS.version, SOCKS.connect, 0, SOCKS.domain, name.length]), name, port]);
}
