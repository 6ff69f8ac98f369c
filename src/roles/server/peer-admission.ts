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
  // A peer reached over WebRTC has no address clients dial: the same identity, still over WebRTC.
  const sameAddress =
    live !== undefined && live.identityKey === input.identityKey && (input.ice ? live.ice !== undefined : live.ice === undefined && live.host === input.host && live.port === input.port);
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
    ...(input.ice ? { ice: { userId: input.ice.userId, deviceId: input.ice.deviceId } } : {}),
    ...(input.mapped ? { mapped: true } : {}),
    state: sameAddress && live.state === 'verified' ? 'verified' : 'candidate',
    registeredAt: live?.registeredAt ?? now,
    expiresAt: now + ttlMs,
    ...(sameAddress && live.lastVerdict ? { lastVerdict: live.lastVerdict } : {}),
    ...(sameAddress && live.verdicts ? { verdicts: live.verdicts } : {}),
    ...(sameAddress && live.state !== 'paused' && live.failingSince !== undefined ? { failingSince: live.failingSince } : {}),
  };
}

/** The rules verdicts are judged by (server options). */
export interface VerificationRules {
  /** A peer failing this long without a pass is paused until it registers again. */
  peerPauseAfterMs: number;
  /** A verdict counts this long; a verified peer without enough fresh passes is a candidate again. */
  verdictTtlMs: number;
  /** How many verifiers (each its latest verdict) must pass a peer to admit it, or fail it to evict it. */
  verifierQuorum: number;
}

/** Each verifier's latest verdict still fresh at `now`. */
function freshVerdicts(peer: PeerRecord, now: number, ttlMs: number): Record<string, Verdict> {
  // Registrations from before verdicts were kept per verifier have only their last one.
  const all = peer.verdicts ?? (peer.lastVerdict ? { '': peer.lastVerdict } : {});
  return Object.fromEntries(Object.entries(all).filter(([, v]) => now - v.at <= ttlMs));
}

/**
 * Admission and eviction (LEP 007), with any number of verifiers: each verifier's latest verdict is
 * kept (until --verdict-ttl). When a quorum of them fails the peer it is out (a candidate again, with
 * `failingSince`); otherwise, when a quorum passes it, it is verified; otherwise it stays as it was.
 * Failing for `peerPauseAfterMs` without a pass pauses it until it registers again, and a paused
 * peer stays paused whatever comes.
 */
export function applyVerdict(peer: PeerRecord, verifier: string, verdict: Verdict, rules: VerificationRules): PeerRecord {
  const verdicts = { ...freshVerdicts(peer, verdict.at, rules.verdictTtlMs), [verifier]: verdict };
  const { failingSince: _f, ...rest } = peer;
  if (peer.state === 'paused') return { ...peer, verdicts, lastVerdict: verdict };
  const votes = Object.values(verdicts);
  const fails = votes.filter((v) => !v.ok).length;
  if (fails >= rules.verifierQuorum) {
    const failingSince = peer.failingSince ?? verdict.at;
    return { ...rest, failingSince, state: verdict.at - failingSince >= rules.peerPauseAfterMs ? 'paused' : 'candidate', verdicts, lastVerdict: verdict };
  }
  if (votes.length - fails >= rules.verifierQuorum) return { ...rest, state: 'verified', verdicts, lastVerdict: verdict };
  return { ...peer, verdicts, lastVerdict: verdict };
}

/**
 * The state a peer is in now: a verified peer with fewer fresh passes (younger than --verdict-ttl)
 * than the quorum counts as a candidate (out of the round robin, probed like one) until fresh
 * passes come. Verification that no verifier renews goes stale, so a dead verifier cannot leave
 * peers in the rotation for ever.
 */
export function currentState(peer: PeerRecord, now: number, rules: Pick<VerificationRules, 'verdictTtlMs' | 'verifierQuorum'>): PeerRecord {
  if (peer.state !== 'verified') return peer;
  const passes = Object.values(freshVerdicts(peer, now, rules.verdictTtlMs)).filter((v) => v.ok).length;
  return passes >= rules.verifierQuorum ? peer : { ...peer, state: 'candidate' };
}

/** The registry's live peers in their current state (see currentState): what get, DNS and the gauges see. */
export function currentPeers(registry: Pick<PeerRegistry, 'listPeers'>, rules: Pick<VerificationRules, 'verdictTtlMs' | 'verifierQuorum'>): Pick<PeerRegistry, 'listPeers'> {
  return { listPeers: async (now) => (await registry.listPeers(now)).map((p) => currentState(p, now, rules)) };
}
