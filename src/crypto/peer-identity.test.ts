import { randomUUID } from 'node:crypto';
import test from 'ava';
import { checkPeerProof, PeerIdentity } from './peer-identity.js';

test('a proof checks only for its key, peer id and nonce', (t) => {
  const a = new PeerIdentity();
  const b = new PeerIdentity();
  const peerA = randomUUID();
  const peerB = randomUUID();
  const proof = a.prove(peerA, 'nonce-0123456789abcdef');
  t.is(a.publicKey.length, 43);
  t.is(checkPeerProof(a.publicKey, peerA, 'nonce-0123456789abcdef', proof), 'ok');
  t.is(checkPeerProof(b.publicKey, peerA, 'nonce-0123456789abcdef', proof), 'mismatch', 'another key');
  t.is(checkPeerProof(a.publicKey, peerA, 'nonce-0123456789abcdeX', proof), 'mismatch', 'another nonce');
  // Relayed from peer A's proxy to a verifier probing registration B: names the wrong peer.
  t.is(checkPeerProof(a.publicKey, peerB, 'nonce-0123456789abcdef', proof), 'mismatch', 'another peer id');
  t.is(checkPeerProof(a.publicKey, peerA, 'nonce-0123456789abcdef', undefined), 'missing');
  t.is(checkPeerProof(a.publicKey, peerA, 'nonce-0123456789abcdef', `${peerA}.AAAA`), 'mismatch', 'garbage signature');
  t.is(checkPeerProof('not-a-key', peerA, 'nonce-0123456789abcdef', proof), 'mismatch', 'garbage key');
});
