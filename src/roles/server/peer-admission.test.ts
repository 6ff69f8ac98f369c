import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { PeerRecord } from '../../storage/server-store.js';
import { applyVerdict, currentState, nextPeerRecord } from './peer-admission.js';

const KEY = Buffer.alloc(91, 1).toString('base64url');
const input = { userId: randomUUID(), deviceId: 1, host: '203.0.113.7', port: 443, protocols: ['connect' as const], identityKey: KEY };
const fresh = (): PeerRecord => nextPeerRecord(undefined, input, 0, 3_600_000, randomUUID);
const v = (ok: boolean, at: number) => ({ ok, status: ok ? 'ok' : 'timeout', at });
const rules = (verifierQuorum: number) => ({ peerPauseAfterMs: 600_000, verdictTtlMs: 50_000, verifierQuorum });

test('with a quorum of two, one verifier neither admits nor evicts; two do', (t) => {
  let p = applyVerdict(fresh(), 'a', v(true, 1000), rules(2));
  t.is(p.state, 'candidate', 'one pass of two needed');
  p = applyVerdict(p, 'a', v(true, 2000), rules(2));
  t.is(p.state, 'candidate', 'the same verifier twice is still one');
  p = applyVerdict(p, 'b', v(true, 3000), rules(2));
  t.is(p.state, 'verified', 'two verifiers passed it');
  t.deepEqual(Object.keys(p.verdicts ?? {}).sort(), ['a', 'b'], "each verifier's latest verdict is kept");
  p = applyVerdict(p, 'a', v(false, 4000), rules(2));
  t.is(p.state, 'verified', 'one failure of two needed does not evict');
  p = applyVerdict(p, 'b', v(false, 5000), rules(2));
  t.is(p.state, 'candidate', 'a quorum of failures evicts');
  t.is(p.failingSince, 5000);
});

test('with the default quorum of one, any failure evicts until that verifier passes it again', (t) => {
  let p = applyVerdict(fresh(), 'a', v(true, 1000), rules(1));
  p = applyVerdict(p, 'b', v(false, 2000), rules(1));
  t.is(p.state, 'candidate', "b's failure takes it out although a passed it");
  p = applyVerdict(p, 'a', v(true, 3000), rules(1));
  t.is(p.state, 'candidate', "a's pass does not outvote b's standing failure");
  p = applyVerdict(p, 'b', v(true, 4000), rules(1));
  t.is(p.state, 'verified');
});

test('verdicts older than --verdict-ttl stop counting: the peer leaves the round robin, and old failures are forgotten', (t) => {
  let p = applyVerdict(fresh(), 'a', v(true, 1000), rules(1));
  t.is(currentState(p, 51_000, rules(1)).state, 'verified');
  t.is(currentState(p, 51_001, rules(1)).state, 'candidate', 'no fresh pass');
  p = applyVerdict(p, 'b', v(false, 2000), rules(1));
  p = applyVerdict(p, 'a', v(true, 60_000), rules(1));
  t.is(p.state, 'verified', "b's failure is older than the TTL: it no longer counts");
  t.deepEqual(Object.keys(p.verdicts ?? {}), ['a']);
});
