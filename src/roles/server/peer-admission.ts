import type { Verdict } from '../../protocol/messages.js';
import type { PeerRecord, PeerRegistrationInput, PeerRegistry } from '../../storage/server-store.js';

// The admission rules of the peer registry (LEP 007): what a (re-)registration and a verdict do
// to a give peer's state. The stores apply them atomically (registerPeer, recordVerdict).

/**
 * The registration that results from (re-)registering: a live registration keeps its peer id and
 * start time, and its verified state only if the address is unchanged. Shared by the backends.
 */
export function nextPeerRecord(prev: PeerRecord | undefined, input: PeerRegistrationInput, now: number, ttlMs: number, newId: () => string): PeerRecord {
  const live = prev && prev.expiresAt > now ? prev : undefined;
  // Verification holds for one proxy: the same address answering for the same identity key.
  const sameAddress = live !== undefined && live.host === input.host && live.port === input.port && live.identityKey === input.identityKey;
  return {
    peerId: live?.peerId ?? newId(),
    userId: input.userId,
    deviceId: input.deviceId,
    host: input.host,
    port: input.port,
    protocols: [...input.protocols],
    ...(input.publicAddrHint ? { publicAddrHint: input.publicAddrHint } : {}),
    identityKey: input.identityKey,
    ...(input.plaintext ? { plaintext: true } : {}),
    ...(input.sniName ? { sniName: input.sniName } : {}),
    state: sameAddress && live.state === 'verified' ? 'verified' : 'candidate',
    registeredAt: live?.registeredAt ?? now,
    expiresAt: now + ttlMs,
    ...(sameAddress && live.lastVerdict ? { lastVerdict: live.lastVerdict } : {}),
    ...(sameAddress && live.state !== 'paused' && live.failingSince !== undefined ? { failingSince: live.failingSince } : {}),
  };
}

/**
 * Admission and eviction (LEP 007): a pass makes a peer verified (it enters the round robin); one
 * failure takes it out (a candidate again, re-admitted on its next pass); failing for `pauseAfterMs`
 * without a pass pauses it until it registers again. A paused peer stays paused whatever comes.
 */
export function applyVerdict(peer: PeerRecord, verdict: Verdict, pauseAfterMs: number): PeerRecord {
  const { failingSince: _f, ...rest } = peer;
  if (peer.state === 'paused') return { ...peer, lastVerdict: verdict };
  if (verdict.ok) return { ...rest, state: 'verified', lastVerdict: verdict };
  const failingSince = peer.failingSince ?? verdict.at;
  return { ...rest, failingSince, state: verdict.at - failingSince >= pauseAfterMs ? 'paused' : 'candidate', lastVerdict: verdict };
}

/**
 * The state a peer is in now: a verified peer whose last pass is older than `verdictTtlMs` counts as
 * a candidate (out of the round robin, probed like one) until a fresh pass. Verification that no
 * verifier renews goes stale, so a dead verifier cannot leave peers in the rotation for ever.
 */
export function currentState(peer: PeerRecord, now: number, verdictTtlMs: number): PeerRecord {
  if (peer.state !== 'verified') return peer;
  const passedAt = peer.lastVerdict?.ok ? peer.lastVerdict.at : undefined;
  return passedAt !== undefined && now - passedAt <= verdictTtlMs ? peer : { ...peer, state: 'candidate' };
}

/** The registry's live peers in their current state (see currentState): what get, DNS and the gauges see. */
export function currentPeers(registry: Pick<PeerRegistry, 'listPeers'>, verdictTtlMs: number): Pick<PeerRegistry, 'listPeers'> {
  return { listPeers: async (now) => (await registry.listPeers(now)).map((p) => currentState(p, now, verdictTtlMs)) };
}
