import test from 'ava';
import { RecentNonces } from './recent-nonces.js';

test('a nonce claimed again with its expiry is a replay; other scopes, nonces and expiries are not, and pruning forgets', (t) => {
  const nonces = new RecentNonces();
  const at = 1_700_000_000_000;
  t.true(nonces.claim('u:1', 'n1', at));
  t.false(nonces.claim('u:1', 'n1', at), 'the same claim again is a replay');
  t.true(nonces.claim('u:2', 'n1', at), 'another scope');
  t.true(nonces.claim('u:1', 'n2', at), 'another nonce');
  t.true(nonces.claim('u:1', 'n1', at + 60_000), 'a claim is scope, nonce and expiry (a signed request repeats its time)');
  nonces.prune(at + 10_000);
  t.true(nonces.claim('u:1', 'n1', at), 'forgotten once its bucket has expired');
  t.false(nonces.claim('u:1', 'n1', at + 60_000), 'a later bucket is kept');
});
