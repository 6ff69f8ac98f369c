import test from 'ava';
import { Buckets, LocalRateLimit } from './token-bucket.js';

const policy = { capacity: 3, refillPerSecond: 1 };

test('a bucket starts full, empties, refills with time and says when to retry', (t) => {
  const b = new Buckets();
  for (let i = 0; i < 3; i++) t.true(b.take('k', 1, policy, 1000).ok);
  t.deepEqual(b.take('k', 1, policy, 1000), { ok: false, retryAfterMs: 1000 });
  t.deepEqual(b.take('k', 1, policy, 1500), { ok: false, retryAfterMs: 500 });
  t.true(b.take('k', 1, policy, 2000).ok);
  t.false(b.take('k', 1, policy, 2000).ok);
  t.true(b.take('other', 1, policy, 2000).ok, 'keys are apart');
  t.deepEqual(b.take('k', 4, policy, 10_000), { ok: false, retryAfterMs: Number.MAX_SAFE_INTEGER }, 'more than the capacity never fits');
});

test('past maxKeys the full buckets go, and the ones in use stay', (t) => {
  const b = new Buckets(2);
  t.true(b.take('used', 2, policy, 0).ok);
  t.true(b.take('a', 0, policy, 0).ok);
  t.true(b.take('b', 0, policy, 0).ok);
  t.is(b.size, 1, 'the two full buckets were dropped');
  t.true(b.take('used', 1, policy, 0).ok);
  t.false(b.take('used', 1, policy, 0).ok, 'the used bucket kept its count');
  t.true(b.take('new', 3, policy, 0).ok);
  t.is(b.size, 2, 'a new key that took tokens is kept');
});

test('LocalRateLimit allows twice its rate in a burst; 0 turns it off', (t) => {
  const r = new LocalRateLimit(2);
  t.deepEqual([1, 2, 3, 4, 5].map(() => r.take('net', 0)), [true, true, true, true, false]);
  t.true(r.take('net', 500));
  const off = new LocalRateLimit(0);
  t.true([...Array(100)].every(() => off.take('net', 0)));
});

test('a flood of new keys, each bucket in use, stays within maxKeys: the least recently used go, and a prune is not a walk per take', (t) => {
  const b = new Buckets(100);
  const slow = { capacity: 3, refillPerSecond: 0.001 };
  let last = 0;
  for (let i = 0; i < 1000; i++) {
    t.true(b.take(`net-${i}`, 1, slow, i).ok);
    t.true(b.size <= 100, `at most maxKeys (${b.size} after ${i + 1} keys)`);
    if (i > 0 && b.size < last) t.true(b.size <= 90, 'a prune leaves room for a tenth more');
    last = b.size;
  }
  t.true(b.take('net-999', 2, slow, 999).ok);
  t.false(b.take('net-999', 1, slow, 999).ok, 'the most recent key kept its count');
  t.true(b.take('net-0', 3, slow, 1000).ok, 'the oldest went: it starts full again');
});
