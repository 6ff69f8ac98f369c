import { EventEmitter } from 'node:events';
import test from 'ava';
import { addressKey, ConnectionLimiter } from './connection-limiter.js';

class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(readonly remoteAddress: string) {
    super();
  }
  destroy() {
    this.destroyed = true;
    this.emit('close');
  }
}

test('addresses are counted as IPv4 addresses and IPv6 /64 networks', (t) => {
  t.is(addressKey('192.0.2.7'), '192.0.2.7');
  t.is(addressKey('::ffff:192.0.2.7'), '192.0.2.7', 'IPv4-mapped is the IPv4 address');
  t.is(addressKey('2001:db8:1:2:aaaa::1'), addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), 'one /64');
  t.not(addressKey('2001:db8:1:2::1'), addressKey('2001:db8:1:3::1'));
});

test('caps per address and in total; a closed connection frees its place', (t) => {
  const limiter = new ConnectionLimiter({ maxTotal: 4, maxPerAddress: 2 });
  const a = [new FakeSocket('192.0.2.1'), new FakeSocket('192.0.2.1'), new FakeSocket('::ffff:192.0.2.1')];
  t.deepEqual(a.map((s) => limiter.admit(s)), [true, true, false]);
  t.true(a[2]!.destroyed, 'the one over the cap is closed at once');
  const v6 = [new FakeSocket('2001:db8::1'), new FakeSocket('2001:db8::2'), new FakeSocket('2001:db8::3')];
  t.deepEqual(v6.map((s) => limiter.admit(s)), [true, true, false], 'a /64 is one client');
  t.false(limiter.admit(new FakeSocket('198.51.100.1')), 'four open: the total cap');
  t.is(limiter.refused, 3);
  a[0]!.destroy();
  t.true(limiter.admit(new FakeSocket('192.0.2.1')), 'a place was freed');
  t.is(limiter.open, 4);
  const open = new ConnectionLimiter({ maxTotal: 0, maxPerAddress: 0 });
  for (let i = 0; i < 100; i++) t.true(open.admit(new FakeSocket('192.0.2.9')));
});
