import { LanternError } from '../core/errors.js';
import type { Address, DeviceBundle, KeyCounts, KeysUpload, PeerInfo, ProxyProtocol, Role } from '../protocol/messages.js';
import { MAX_DEVICE_ID, MIN_DEVICE_ID } from '../protocol/version.js';
import type { Buckets } from './token-bucket.js';

export interface AccountRecord {
  name: string;
  /** Anonymized id: random UUIDv4, never derived from the name. */
  userId: string;
  role: Role;
  /** `scrypt$N$r$p$salt$hash`, see crypto/password.ts. */
  passwordHash: string;
  createdAt: number;
  /** Set by `account revoke NAME`: the account can no longer log in. */
  disabledAt?: number;
}

export interface DeviceCredential {
  /** Hex serial of the certificate issued to this device; only the newest one is accepted. */
  serial: string;
  /** SPKI PEM of the device key the certificate certifies. */
  publicKeyPem: string;
  expiresAt: number;
}

export interface DeviceRecord extends DeviceCredential {
  userId: string;
  deviceId: number;
  createdAt: number;
  revokedAt?: number;
}

/** An LA1S session (see protocol/request-auth.ts). Revoking or renewing the device ends it. */
export interface SessionRecord {
  id: string;
  userId: string;
  deviceId: number;
  /** HMAC key, base64. */
  key: string;
  expiresAt: number;
}

export interface StoredMessage {
  /** Server-assigned id, unique per recipient device. */
  id: string;
  from: Address;
  sentAt: number;
  type: number;
  /** Opaque payload, standard base64 as received. */
  payload: string;
}

export interface EnqueueInput {
  /** Client-chosen message id; (sender, clientId) is deduplicated per recipient device. */
  clientId: string;
  /** Hash of the content, so that a reused client id with other content is a conflict. */
  digest: string;
  from: Address;
  type: number;
  payload: string;
  sentAt: number;
  expiresAt: number;
}

/** A recipient of an enqueue; `type`/`payload` override the message's for this device (per-device ciphertexts). */
export interface Recipient extends Address {
  type?: number;
  payload?: string;
}

/** A device that has uploaded keys, with its current registration id. */
export interface Registration {
  deviceId: number;
  registrationId: number;
}

/** A give peer's registration: one per device. */
export interface PeerRecord extends PeerInfo {
  userId: string;
  deviceId: number;
}

export interface PeerRegistrationInput {
  userId: string;
  deviceId: number;
  host: string;
  port: number;
  protocols: ProxyProtocol[];
  publicAddrHint?: string;
  identityKey: string;
  plaintext?: boolean;
  sniName?: string;
  /** Reached over WebRTC, offers sent to this device. */
  ice?: Address;
  mapped?: boolean;
}

export interface QueueLimits {
  maxMessages: number;
  maxBytes: number;
  /**
   * What the messages of one sender (a user, all its devices together) may take of one device's
   * queue at most, so that one sender cannot fill it for everyone. Default: all of it.
   */
  perSender?: { maxMessages: number; maxBytes: number };
}

/**
 * Why a recipient device got nothing: its queue is `full`, the sender holds its `share` of it
 * already, or the device is `dormant` (see EnqueueOptions.dormantBefore).
 */
export type SkipReason = 'full' | 'share' | 'dormant';

export interface SkippedDevice {
  deviceId: number;
  reason: SkipReason;
}

/**
 * `queued`: stored for at least one recipient; `duplicate`: nothing new stored, the message was
 * seen before for the recipients not skipped; `skipped`: every recipient was skipped, nothing
 * stored. `skipped` lists the devices skipped (and why), in recipient order. `notified` when the
 * store has already woken the recipients' polls itself (as part of the same atomic step).
 * `limited`: bucket number `bucket` of the send's buckets was short, and nothing was stored.
 */
export type EnqueueResult =
  | { status: 'queued' | 'duplicate' | 'skipped'; notified?: true; skipped?: SkippedDevice[] }
  | { status: 'limited'; bucket: number; retryAfterMs: number };

/** A token bucket a send takes from (see EnqueueOptions). */
export interface BucketTake {
  key: string;
  cost: number;
  policy: BucketPolicy;
}

export interface EnqueueOptions {
  /** The time now (for the buckets). */
  now: number;
  /**
   * Taken in order before anything is stored; the first one short ends the send as `limited` (tokens
   * already taken stay taken, as with separate takeTokens calls). A shared store takes them in the
   * same atomic step as the write; their keys live with the recipient user.
   */
  buckets?: readonly BucketTake[];
  /** Every recipient must be an active device, else LA_ERR_RECIPIENT_NOT_FOUND (checked with the write). */
  activeDevicesOnly?: boolean;
  /**
   * A recipient device whose last poll (recordPoll), or whose creation if it never polled, is
   * before this time is skipped as `dormant`: nothing more is queued for a device nobody reads.
   */
  dormantBefore?: number;
}

export interface ExpireOptions {
  /** Also deletes the queued messages of devices dormant before this time (see EnqueueOptions). */
  dormantBefore?: number;
}

export interface BucketPolicy {
  capacity: number;
  refillPerSecond: number;
}

export type TakeResult = { ok: true } | { ok: false; retryAfterMs: number };

export interface QueueStats {
  count: number;
  bytes: number;
}

export interface ExpireResult {
  messages: number;
}

export interface StoreCallOptions {
  signal?: AbortSignal;
}

/** Accounts and their devices (credentials, revocation). */
export interface AccountStore {
  /** Creates an account; LA_ERR_ACCOUNT_EXISTS when the name is taken. */
  createAccount(account: AccountRecord, options?: StoreCallOptions): Promise<void>;
  getAccount(name: string, options?: StoreCallOptions): Promise<AccountRecord | undefined>;
  getAccountByUserId(userId: string, options?: StoreCallOptions): Promise<AccountRecord | undefined>;
  /** Marks the account disabled; false if there is no such account. */
  disableAccount(name: string, now: number): Promise<boolean>;

  /**
   * Adds a device with the lowest free id in 1..127 (revoked ids are free again), or replaces the
   * credential of `deviceId` when given (renewal, which ends its sessions; LA_ERR_DEVICE_NOT_FOUND if
   * it is not active). LA_ERR_DEVICE_LIMIT when all 127 are active (see deviceIdFor).
   */
  putDevice(userId: string, credential: DeviceCredential, now: number, deviceId?: number): Promise<DeviceRecord>;
  getDevice(userId: string, deviceId: number, options?: StoreCallOptions): Promise<DeviceRecord | undefined>;
  /** Active (not revoked) devices, by id. */
  listDevices(userId: string, options?: StoreCallOptions): Promise<DeviceRecord[]>;
  /** Marks the device revoked and deletes its queue, keys and sessions. False if there was no active device. */
  revokeDevice(userId: string, deviceId: number, now: number): Promise<boolean>;
}

/** LA1S sessions and the one-time values (nonces) that make requests unreplayable. */
export interface SessionStore {
  /**
   * Stores a session of an active device; with `keep`, the device's sessions beyond that many
   * end, those that expire first going first (so a flood of session openings holds `keep` at most).
   */
  putSession(session: SessionRecord, keep?: number): Promise<void>;
  /** A session that has not expired by `now`, if any. */
  getSession(id: string, now: number): Promise<SessionRecord | undefined>;
  /**
   * claimNonce for a request of session `id`, in one step with checking that the session still
   * exists (a renewal or revocation deletes it): 'ended' if it does not (or expired by `now`), else
   * 'claimed' or 'replayed'. So a caller may keep session records in memory and still never accept
   * a request of an ended session.
   */
  claimSessionNonce(id: string, nonce: string, expiresAt: number, now: number): Promise<'claimed' | 'replayed' | 'ended'>;
  /**
   * Records a one-time value of `scope` (a device) until `expiresAt`; false if it was already
   * recorded (a replay). A replay repeats the expiry too: (scope, nonce, expiresAt) is one claim,
   * and whether the same nonce with another expiry counts as claimed is the backend's (the
   * in-process ones look only where that expiry is kept). Not for "once per window" limits: those
   * are token buckets (takeTokens).
   */
  claimNonce(scope: string, nonce: string, expiresAt: number): Promise<boolean>;
}

/** Signal key distribution. */
export interface KeyStore {
  /**
   * Stores a device's keys (see protocol KeysUpload for the replace semantics; signatures are
   * checked by the caller). A new identity key or registration id drops the old one-time keys.
   */
  putKeys(address: Address, keys: KeysUpload): Promise<void>;
  /** One-time keys left for the device. */
  keyCounts(address: Address): Promise<KeyCounts>;
  /**
   * The device's bundle, atomically popping one one-time EC prekey and one one-time Kyber prekey
   * (else the last-resort Kyber key): no key is ever served twice. With `oneTime: false`, the
   * bundle without one-time keys (the last-resort Kyber key), popping nothing. Undefined when the
   * device has no keys.
   */
  takeBundle(address: Address, options?: { oneTime?: boolean }): Promise<DeviceBundle | undefined>;
  /** Active devices of the user that have uploaded keys, by id. */
  registrations(userId: string): Promise<Registration[]>;
}

/** The give peers' registrations (the admission rules are the caller's: roles/server/peer-admission.ts). */
export interface PeerRegistry {
  /**
   * Registers the device's proxy, or updates its registration, in one step: `next` gets the
   * stored record (if any, live or not) and returns the one to store.
   */
  registerPeer(address: Address, next: (prev: PeerRecord | undefined) => PeerRecord): Promise<PeerRecord>;
  /** Extends a registration; undefined when there is none (or it expired). */
  heartbeatPeer(address: Address, now: number, ttlMs: number): Promise<PeerRecord | undefined>;
  unregisterPeer(address: Address): Promise<boolean>;
  /** Registrations not expired at `now`. */
  listPeers(now: number): Promise<PeerRecord[]>;
  /**
   * Changes the live registration with that peer id in one step (`apply` gets it and returns the
   * new one: a verdict). Undefined when no peer with that id is live at `now`.
   */
  recordVerdict(peerId: string, now: number, apply: (peer: PeerRecord) => PeerRecord): Promise<PeerRecord | undefined>;
}

/** Rate limits. */
export interface LimitStore {
  /** Token bucket: takes `cost` tokens from `key` or says how long until they are there. */
  takeTokens(key: string, cost: number, policy: BucketPolicy, now: number): Promise<TakeResult>;
}

/** The device queues of store-and-forward messaging. */
export interface MailboxStore {
  /**
   * Queues one message for each recipient in one step. A recipient whose queue would exceed
   * `limits` (or the sender's share of them), or that is dormant, is skipped: it never keeps the
   * others from getting theirs (see EnqueueResult). A (sender, clientId) seen before for a recipient
   * is a duplicate there (nothing stored again); seen with another digest, LA_ERR_MESSAGE_ID_CONFLICT
   * and nothing is stored. Once this resolves the messages are durable. See EnqueueOptions for the
   * rate limits and checks that come first.
   */
  enqueue(recipients: readonly Recipient[], message: EnqueueInput, limits: QueueLimits, options?: EnqueueOptions): Promise<EnqueueResult>;
  /** The oldest `limit` messages of a queue, in send order; `more` when others follow. */
  fetch(address: Address, limit: number): Promise<{ messages: StoredMessage[]; more: boolean }>;
  /** Deletes the given messages of this queue; returns how many existed. */
  ack(address: Address, ids: readonly string[]): Promise<number>;
  queueStats(address: Address): Promise<QueueStats>;
  /** Messages waiting in all queues (for metrics). */
  queuedMessages(): Promise<number>;
  /** Records that the device polled at `now`: it is not dormant (see EnqueueOptions.dormantBefore). */
  recordPoll(address: Address, now: number): Promise<void>;
  /** Deletes messages, dedupe records, sessions and nonces whose time has passed (and see ExpireOptions). */
  expire(now: number, options?: ExpireOptions): Promise<ExpireResult>;
}

/**
 * Everything the server keeps, by concern; each part is what its users take (KeyService the
 * KeyStore, the DNS server the PeerRegistry…). Every operation that must be atomic is one method,
 * so a backend shared by several server processes (Redis) can implement it as one atomic step.
 * Failures surface as LanternError with an LA_ERR_STORE_* code. A failed write changes nothing,
 * in memory or on disk (compliance suite).
 */
export interface ServerStore extends AccountStore, SessionStore, KeyStore, PeerRegistry, LimitStore, MailboxStore {
  open(): Promise<void>;
  close(): Promise<void>;
}

/** Wake-ups between the code that stores a message and the long-polls waiting for it. */
export interface Notifier {
  /** Returns an unsubscribe function. */
  subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>>;
  /** Answers how many listeners (on any process) got it. */
  publish(channel: string, message: string): Promise<number>;
  close(): Promise<void>;
}

export function deviceChannel(address: Address): string {
  // The user's hash tag: on a Redis Cluster the wake-up is published (SPUBLISH) in the script that
  // queued the message, which may only touch the slot of that user's keys.
  return `device:{${address.userId}}:${address.deviceId}`;
}

/**
 * The checks that come before an enqueue (see EnqueueOptions), for the backends that keep devices
 * and buckets in one process: undefined to go on, or the `limited` outcome. Synchronous: it runs
 * for every message sent, and a turn of the event loop per check showed in profiles.
 */
export function checkBeforeEnqueue(
  store: { deviceNow(userId: string, deviceId: number): DeviceRecord | undefined; readonly buckets: Buckets },
  recipients: readonly Address[],
  options: EnqueueOptions | undefined,
): Extract<EnqueueResult, { status: 'limited' }> | undefined {
  if (!options) return undefined;
  if (options.activeDevicesOnly) {
    for (const r of recipients) {
      const d = store.deviceNow(r.userId, r.deviceId);
      if (!d || d.revokedAt !== undefined) throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such device');
    }
  }
  const buckets = options.buckets ?? [];
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!;
    const r = store.buckets.take(b.key, b.cost, b.policy, options.now);
    if (!r.ok) return { status: 'limited', bucket: i, retryAfterMs: r.retryAfterMs };
  }
  return undefined;
}

/**
 * claimSessionNonce for the backends that keep sessions in one process: the session check and the
 * claim cannot be split by another process (the session's nonces are scoped `s:<id>`).
 */
export async function claimSessionNonceInProcess(
  store: Pick<ServerStore, 'getSession' | 'claimNonce'>,
  id: string,
  nonce: string,
  expiresAt: number,
  now: number,
): Promise<'claimed' | 'replayed' | 'ended'> {
  if (!(await store.getSession(id, now))) return 'ended';
  return (await store.claimNonce(`s:${id}`, nonce, expiresAt)) ? 'claimed' : 'replayed';
}

/**
 * The id a new device gets (see putDevice): `deviceId` itself for a renewal (which must be
 * active, else LA_ERR_DEVICE_NOT_FOUND), else the lowest id in MIN_DEVICE_ID..MAX_DEVICE_ID that
 * no active device holds (revoked ids are free again; LA_ERR_DEVICE_LIMIT when none is).
 */
export function deviceIdFor(existing: ReadonlyMap<number, DeviceRecord>, deviceId?: number): number {
  const active = (id: number) => {
    const d = existing.get(id);
    return d !== undefined && d.revokedAt === undefined;
  };
  if (deviceId !== undefined) {
    if (!active(deviceId)) throw new LanternError('LA_ERR_DEVICE_NOT_FOUND');
    return deviceId;
  }
  for (let id = MIN_DEVICE_ID; id <= MAX_DEVICE_ID; id++) if (!active(id)) return id;
  throw new LanternError('LA_ERR_DEVICE_LIMIT');
}

/** The sessions beyond the newest `keep` (those that expire first, then by id), which end. */
export function sessionsBeyond<S extends { id: string; expiresAt: number }>(sessions: readonly S[], keep: number): S[] {
  const byAge = [...sessions].sort((a, b) => b.expiresAt - a.expiresAt || (a.id < b.id ? 1 : -1));
  return byAge.slice(Math.max(0, keep));
}

/** Whether a device that last polled at `lastPoll` (if ever) and was created at `createdAt` is dormant (see EnqueueOptions). */
export function isDormant(lastPoll: number | undefined, createdAt: number, dormantBefore: number | undefined): boolean {
  return dormantBefore !== undefined && Math.max(lastPoll ?? 0, createdAt) < dormantBefore;
}

/**
 * What becomes of one recipient of an enqueue, for the backends that keep queues in one process:
 * undefined to store the message there, else why it is skipped.
 */
export function skipReason(
  queue: QueueStats,
  fromSender: QueueStats,
  size: number,
  limits: QueueLimits,
): Exclude<SkipReason, 'dormant'> | undefined {
  const per = limits.perSender;
  if (per && (fromSender.count + 1 > per.maxMessages || fromSender.bytes + size > per.maxBytes)) return 'share';
  if (queue.count + 1 > limits.maxMessages || queue.bytes + size > limits.maxBytes) return 'full';
  return undefined;
}

/** The status of an enqueue that stored `stored` messages and met `seen` duplicates. */
export function enqueueStatus(stored: number, seen: number): 'queued' | 'duplicate' | 'skipped' {
  return stored > 0 ? 'queued' : seen > 0 ? 'duplicate' : 'skipped';
}

/** Decoded size of a standard base64 string. */
export function base64Bytes(b64: string): number {
  const pad = b64.endsWith('==') ? 2 : b64.endsWith('=') ? 1 : 0;
  return (b64.length / 4) * 3 - pad;
}

