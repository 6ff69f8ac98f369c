import test from 'ava';
import { CANARY_BYTES, CanaryMaker } from './canary.js';

test('canary content is the same for a nonce and secret, and differs for another of either', (t) => {
  const a = new CanaryMaker(Buffer.alloc(32, 1));
  const b = new CanaryMaker(Buffer.alloc(32, 2));
  const nonce = CanaryMaker.newNonce();
  const content = a.content(nonce);
  t.is(content.length, CANARY_BYTES);
  t.deepEqual(a.content(nonce), content, 'served again for the same nonce without state');
  t.notDeepEqual(a.content(CanaryMaker.newNonce()), content);
  t.notDeepEqual(b.content(nonce), content, 'a peer without the secret cannot produce it');
  t.is(a.content(nonce, 100).length, 100);
  t.deepEqual(a.content(nonce, 100), content.subarray(0, 100));
  // Not trivially compressible (a proxy cannot pass it off with a cheap pattern).
  t.true(new Set(content.subarray(0, 4096)).size > 200);
  t.is(a.digest(nonce).length, 64);
});
