import test from 'ava';
import { randomBytes } from 'node:crypto';
import { bindingRequest, bindingSuccess, parseBindingRequest, parseBindingSuccess, STUN_MAGIC_COOKIE } from './stun.js';

test('a Binding request is answered with the XOR-mapped address, IPv4 and IPv6', (t) => {
  const id = randomBytes(12);
  t.deepEqual(parseBindingRequest(bindingRequest(id)), id);
  for (const [address, port] of [['203.0.113.7', 54321], ['2001:db8::1', 3478], ['::ffff:10.0.0.1', 1]] as const) {
    const answer = bindingSuccess(id, address, port);
    t.is(answer.readUInt16BE(0), 0x0101);
    t.is(answer.readUInt32BE(4), STUN_MAGIC_COOKIE);
    t.deepEqual(parseBindingSuccess(answer, id), { address: address === '2001:db8::1' ? '2001:db8::1' : address === '::ffff:10.0.0.1' ? '::ffff:a00:1' : address, port });
    t.is(parseBindingSuccess(answer, randomBytes(12)), undefined, 'another transaction is not ours');
  }
  // The mapped address is not in the clear (XOR with the cookie): a middlebox rewriting addresses misses it.
  t.false(bindingSuccess(id, '203.0.113.7', 54321).includes(Buffer.from([203, 0, 113, 7])));
});

test('a request with attributes is taken; anything else is not a Binding request', (t) => {
  const id = randomBytes(12);
  const withAttribute = Buffer.concat([bindingRequest(id), Buffer.from([0x80, 0x22, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65, 0, 0, 0])]);
  withAttribute.writeUInt16BE(12, 2);
  t.deepEqual(parseBindingRequest(withAttribute), id);
  const bad = (mutate: (b: Buffer) => Buffer) => parseBindingRequest(mutate(Buffer.from(withAttribute)));
  t.is(bad((b) => b.subarray(0, 19)), undefined, 'shorter than a header');
  t.is(bad((b) => (b.writeUInt32BE(0, 4), b)), undefined, 'no magic cookie (RFC 3489)');
  t.is(bad((b) => (b.writeUInt16BE(0x0111, 0), b)), undefined, 'not a request');
  t.is(bad((b) => (b.writeUInt16BE(16, 2), b)), undefined, 'length beyond the datagram');
  t.is(bad((b) => (b.writeUInt16BE(9, 22), b)), undefined, 'an attribute overrunning the body');
  t.is(bad((b) => Buffer.concat([b, Buffer.alloc(600)])), undefined, 'larger than any binding');
  t.is(parseBindingRequest(Buffer.from('GET / HTTP/1.1\r\n\r\n')), undefined);
});
