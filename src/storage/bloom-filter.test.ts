import test from 'ava';
import { BloomFilter } from './bloom-filter.js';

test('a Bloom filter never forgets an added string and rarely claims an absent one', (t) => {
  const f = new BloomFilter(20, 7);
  for (let i = 0; i < 50_000; i++) f.add(`k!user-${i}!msg-${i * 7}`);
  let lost = 0;
  for (let i = 0; i < 50_000; i++) if (!f.has(`k!user-${i}!msg-${i * 7}`)) lost++;
  t.is(lost, 0);
  let falsePositives = 0;
  for (let i = 0; i < 50_000; i++) if (f.has(`k!other-${i}!msg-${i}`)) falsePositives++;
  // 50k keys in 2^20 bits with 7 probes: about 0.1% expected.
  t.true(falsePositives < 500, `false positives: ${falsePositives}`);
});
