import { randomUUID } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import type { KeysUpload, Verdict } from '../../../protocol/messages.js';
import { applyVerdict, nextPeerRecord } from '../../../roles/server/peer-admission.js';
import type { DeviceCredential, EnqueueInput, PeerRegistrationInput, ServerStore } from '../../../storage/server-store.js';

export interface ServerStoreFactory {
  /** Returns a fresh, opened store. */
  setup(): Promise<ServerStore>;
  teardown(store: ServerStore): Promise<void>;
  /**
   * For backends whose writes can fail and that keep state in memory beside them: a fresh store
   * whose writes fail while `failWrites(true)`, and the same data opened anew (closing this one).
   */
  faulty?(): Promise<{ store: ServerStore; failWrites(on: boolean): void; reopen(): Promise<ServerStore> }>;
}

export const cred = (n = 1): DeviceCredential => ({
  serial: `0${n}`.padStart(4, 'a'),
  publicKeyPem: `-----BEGIN PUBLIC KEY-----\n${n}\n-----END PUBLIC KEY-----`,
  expiresAt: 10_000_000,
});

export const limits = { maxMessages: 100, maxBytes: 1_000_000 };
/** Two peer identity keys (raw Ed25519, base64url). */
export const KEY_A = Buffer.alloc(32, 1).toString('base64url');
export const KEY_B = Buffer.alloc(32, 2).toString('base64url');

export function msg(over: Partial<EnqueueInput> = {}): EnqueueInput {
  return {
    clientId: randomUUID(),
    digest: 'd1',
    from: { userId: randomUUID(), deviceId: 1 },
    type: 0,
    payload: Buffer.from('hello').toString('base64'),
    sentAt: 1000,
    expiresAt: 5000,
    ...over,
  };
}

/** A (re-)registration under the admission rules, as the server's peer routes make it. */
export const registerPeer = (s: ServerStore, input: PeerRegistrationInput, now: number, ttlMs: number) => s.registerPeer(input, (prev) => nextPeerRecord(prev, input, now, ttlMs, randomUUID));
/** A verdict under the admission rules, as the server's verdict route records it. */
export const recordVerdict = (s: ServerStore, peerId: string, verdict: Verdict, now: number, pauseAfterMs: number, verifier = 'verifier') =>
  s.recordVerdict(peerId, now, (p) => applyVerdict(p, verifier, verdict, { peerPauseAfterMs: pauseAfterMs, verdictTtlMs: 3_600_000, verifierQuorum: 1 }));

export const b64 = (bytes: number, fill: number) => Buffer.alloc(bytes, fill).toString('base64');

/** Opaque key material of the right sizes (the store never parses it). */
export function keys(over: Partial<KeysUpload> = {}, tag = 1): KeysUpload {
  return {
    identityKey: b64(33, tag),
    registrationId: 1000 + tag,
    signedPreKey: { keyId: 1, publicKey: b64(33, 2), signature: b64(64, 3) },
    kyberLastResort: { keyId: 9999, publicKey: b64(1569, 4), signature: b64(64, 5) },
    preKeys: Array.from({ length: 100 }, (_, i) => ({ keyId: i + 1, publicKey: b64(33, i % 250) })),
    kyberPreKeys: Array.from({ length: 100 }, (_, i) => ({ keyId: i + 1, publicKey: b64(1569, i % 250), signature: b64(64, 6) })),
    ...over,
  };
}

/** Registers one test of a concern, run on a fresh store of the backend. */
export type WithStore = (title: string, fn: (t: ExecutionContext, s: ServerStore) => Promise<void>) => void;
