import type { IncomingMessage } from 'node:http';
import test from 'ava';
import { ClientAddresses, defaultClientAddressOptions } from './client-address.js';

const req = (remoteAddress: string, headers: Record<string, string> = {}) => ({ socket: { remoteAddress }, headers }) as unknown as IncomingMessage;
const key = Buffer.alloc(32, 7);
const behind = (header = 'X-Forwarded-For', trustProxy = ['127.0.0.1', '10.0.0.0/8']) => new ClientAddresses({ ...defaultClientAddressOptions, trustProxy, header }, key);

test('without trusted proxies the socket peer is the client, whatever the headers say', (t) => {
  const c = new ClientAddresses(defaultClientAddressOptions, key);
  t.is(c.of(req('::ffff:203.0.113.9', { 'x-forwarded-for': '198.51.100.1' })), '203.0.113.9');
  t.is(c.of(req('2001:db8::5')), '2001:db8::5');
});

test('behind a trusted proxy: the right-most hop that is not trusted; a spoofed left part is never reached', (t) => {
  const c = behind();
  t.is(c.of(req('127.0.0.1', { 'x-forwarded-for': '203.0.113.9' })), '203.0.113.9');
  // The client wrote 1.2.3.4 itself; the edge appended the address it saw, then a trusted internal hop.
  t.is(c.of(req('127.0.0.1', { 'x-forwarded-for': '1.2.3.4, 203.0.113.9, 10.1.2.3' })), '203.0.113.9');
  t.is(c.of(req('127.0.0.1')), '127.0.0.1', 'no header: the proxy itself');
  t.is(c.of(req('127.0.0.1', { 'x-forwarded-for': '203.0.113.9, unknown' })), '127.0.0.1', 'a hop that is no address ends the walk');
  t.is(c.of(req('127.0.0.1', { 'x-forwarded-for': '10.0.0.7, 10.0.0.8' })), '10.0.0.7', 'all trusted: the left-most');
  // A client connecting directly with the header (not from a trusted address) is itself.
  t.is(c.of(req('198.51.100.77', { 'x-forwarded-for': '203.0.113.9' })), '198.51.100.77');
});

test('CF-Connecting-IP and RFC 7239 Forwarded (quoted, bracketed IPv6, ports)', (t) => {
  t.is(behind('CF-Connecting-IP').of(req('127.0.0.1', { 'cf-connecting-ip': '2001:db8:cafe::17' })), '2001:db8:cafe::17');
  const fwd = behind('Forwarded');
  t.is(fwd.of(req('127.0.0.1', { forwarded: 'for=192.0.2.43;proto=https, for="[2001:db8:cafe::17]:4711"' })), '2001:db8:cafe::17');
  t.is(fwd.of(req('127.0.0.1', { forwarded: 'for="198.51.100.3:8080";by=10.0.0.1' })), '198.51.100.3');
  t.is(fwd.of(req('127.0.0.1', { forwarded: 'for=192.0.2.60, for=10.9.9.9' })), '192.0.2.60');
});

test('limit keys name networks (IPv4 /24, IPv6 /56 by default) by a keyed hash, never the address', (t) => {
  const c = new ClientAddresses(defaultClientAddressOptions, key);
  t.is(c.limitKey('203.0.113.9'), c.limitKey('203.0.113.200'), 'one /24');
  t.not(c.limitKey('203.0.113.9'), c.limitKey('203.0.114.9'));
  t.is(c.limitKey('2001:db8:aa:bb01::1'), c.limitKey('2001:db8:aa:bbff:1::2'), 'one /56');
  t.not(c.limitKey('2001:db8:aa:bb01::1'), c.limitKey('2001:db8:aa:cc01::1'));
  t.notRegex(c.limitKey('203.0.113.9'), /203|113/);
  t.not(new ClientAddresses(defaultClientAddressOptions, Buffer.alloc(32, 8)).limitKey('203.0.113.9'), c.limitKey('203.0.113.9'), 'another key, another name');
  const fine = new ClientAddresses({ ...defaultClientAddressOptions, prefix: { v4: 32, v6: 64 } }, key);
  t.not(fine.limitKey('203.0.113.9'), fine.limitKey('203.0.113.10'), 'configurable');
});
