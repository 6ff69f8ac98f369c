import { randomUUID } from 'node:crypto';
import { LanternError } from '../core/errors.js';
import { RecentNonces } from './recent-nonces.js';
import type { Address, DeviceBundle, KeyCounts, KeysUpload, KyberPreKeyUpload, PreKeyUpload } from '../protocol/messages.js';
import {
  base64Bytes,
  type AccountRecord,
  type BucketPolicy,
  type DeviceCredential,
  type DeviceRecord,
  checkBeforeEnqueue,
  claimSessionNonceInProcess,
  sessionsBeyond,
  deviceIdFor,
  type EnqueueInput,
  type EnqueueOptions,
  type EnqueueResult,
  enqueueStatus,
  type ExpireOptions,
  isDormant,
  skipReason,
  type SkippedDevice,
  type ExpireResult,
  type QueueLimits,
  type PeerRecord,
  type QueueStats,
  type Recipient,
  type Registration,
  type ServerStore,
  type SessionRecord,
  type StoredMessage,
  type TakeResult,
} from './server-store.js';
import { Buckets } from './token-bucket.js';

interface QueuedMessage extends StoredMessage {
  expiresAt: number;
  bytes: number;
}

interface DedupeEntry {
  digest: string;
  expiresAt: number;
}

const addrKey = (a: Address) => `${a.userId}:${a.deviceId}`;

interface StoredKeys {
  base: Omit<KeysUpload, 'preKeys' | 'kyberPreKeys'>;
  preKeys: PreKeyUpload[];
  kyberPreKeys: KyberPreKeyUpload[];
}

/** ServerStore in process memory: for tests and throwaway servers. Nothing survives a restart. */
export class MemoryServerStore implements ServerStore {
  #accounts = new Map<string, AccountRecord>();
  #byUserId = new Map<string, string>();
  #devices = new Map<string, Map<number, DeviceRecord>>();
  #queues = new Map<string, Map<string, QueuedMessage>>();
  #dedupe = new Map<string, DedupeEntry>();
  readonly #nonces = new RecentNonces();
  #sessions = new Map<string, SessionRecord>();
  #keys = new Map<string, StoredKeys>();
  #peers = new Map<string, PeerRecord>();
  #buckets = new Buckets();
  /** What checkBeforeEnqueue reads: devices and rate-limit buckets, both held here. */
  readonly #limits = { deviceNow: (userId: string, deviceId: number) => this.#devices.get(userId)?.get(deviceId), buckets: this.#buckets };
  /** Last poll per device. */
  #polled = new Map<string, number>();
  #open = false;

  async open(): Promise<void> {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.#open = false;
  }

  #check(): void {
    if (!this.#open) throw new LanternError('LA_ERR_STORE_UNAVAILABLE', 'Store is closed');
  }

  async createAccount(account: AccountRecord): Promise<void> {
    this.#check();
    if (this.#accounts.has(account.name)) throw new LanternError('LA_ERR_ACCOUNT_EXISTS');
    this.#accounts.set(account.name, structuredClone(account));
    this.#byUserId.set(account.userId, account.name);
  }

  async getAccount(name: string): Promise<AccountRecord | undefined> {
    this.#check();
    const a = this.#accounts.get(name);
    return a && structuredClone(a);
  }

  async getAccountByUserId(userId: string): Promise<AccountRecord | undefined> {
    const name = this.#byUserId.get(userId);
    return name === undefined ? undefined : this.getAccount(name);
  }

  async disableAccount(name: string, now: number): Promise<boolean> {
    this.#check();
    const a = this.#accounts.get(name);
    if (!a) return false;
    a.disabledAt ??= now;
    return true;
  }

  async putDevice(userId: string, credential: DeviceCredential, now: number, deviceId?: number): Promise<DeviceRecord> {
    this.#check();
    let devices = this.#devices.get(userId);
    if (!devices) this.#devices.set(userId, (devices = new Map()));
    const id = deviceIdFor(devices, deviceId);
    const prev = devices.get(id);
    if (deviceId !== undefined) this.#endSessions(userId, id);
    const record: DeviceRecord = {
      ...credential,
      userId,
      deviceId: id,
      createdAt: deviceId !== undefined && prev ? prev.createdAt : now,
    };
    devices.set(id, record);
    return structuredClone(record);
  }

  async getDevice(userId: string, deviceId: number): Promise<DeviceRecord | undefined> {
    this.#check();
    const d = this.#devices.get(userId)?.get(deviceId);
    return d && structuredClone(d);
  }

  async listDevices(userId: string): Promise<DeviceRecord[]> {
    this.#check();
    return [...(this.#devices.get(userId)?.values() ?? [])]
      .filter((d) => d.revokedAt === undefined)
      .sort((a, b) => a.deviceId - b.deviceId)
      .map((d) => structuredClone(d));
  }

  async revokeDevice(userId: string, deviceId: number, now: number): Promise<boolean> {
    this.#check();
    const d = this.#devices.get(userId)?.get(deviceId);
    if (!d || d.revokedAt !== undefined) return false;
    d.revokedAt = now;
    this.#endSessions(userId, deviceId);
    this.#keys.delete(addrKey({ userId, deviceId }));
    this.#peers.delete(addrKey({ userId, deviceId }));
    this.#queues.delete(addrKey({ userId, deviceId }));
    const prefix = `${userId}:${deviceId}|`;
    for (const key of this.#dedupe.keys()) if (key.startsWith(prefix)) this.#dedupe.delete(key);
    return true;
  }

  #endSessions(userId: string, deviceId: number): void {
    for (const [id, s] of this.#sessions) if (s.userId === userId && s.deviceId === deviceId) this.#sessions.delete(id);
  }

  async putSession(session: SessionRecord, keep?: number): Promise<void> {
    this.#check();
    this.#sessions.set(session.id, structuredClone(session));
    if (keep === undefined) return;
    const mine = [...this.#sessions.values()].filter((s) => s.userId === session.userId && s.deviceId === session.deviceId);
    for (const s of sessionsBeyond(mine, keep)) this.#sessions.delete(s.id);
  }

  async getSession(id: string, now: number): Promise<SessionRecord | undefined> {
    this.#check();
    const s = this.#sessions.get(id);
    return s && s.expiresAt > now ? structuredClone(s) : undefined;
  }

  claimSessionNonce(id: string, nonce: string, expiresAt: number, now: number): Promise<'claimed' | 'replayed' | 'ended'> {
    return claimSessionNonceInProcess(this, id, nonce, expiresAt, now);
  }

  async putKeys(address: Address, keys: KeysUpload): Promise<void> {
    this.#check();
    const { preKeys, kyberPreKeys, ...base } = structuredClone(keys);
    const prev = this.#keys.get(addrKey(address));
    const same = prev && prev.base.identityKey === base.identityKey && prev.base.registrationId === base.registrationId;
    this.#keys.set(addrKey(address), {
      base,
      preKeys: preKeys?.length ? preKeys : same ? prev.preKeys : [],
      kyberPreKeys: kyberPreKeys?.length ? kyberPreKeys : same ? prev.kyberPreKeys : [],
    });
  }

  async keyCounts(address: Address): Promise<KeyCounts> {
    this.#check();
    const k = this.#keys.get(addrKey(address));
    return { preKeys: k?.preKeys.length ?? 0, kyberPreKeys: k?.kyberPreKeys.length ?? 0 };
  }

  async takeBundle(address: Address, options?: { oneTime?: boolean }): Promise<DeviceBundle | undefined> {
    this.#check();
    const k = this.#keys.get(addrKey(address));
    if (!k) return undefined;
    const oneTime = options?.oneTime ?? true;
    const preKey = oneTime ? k.preKeys.shift() : undefined;
    const kyberPreKey = (oneTime ? k.kyberPreKeys.shift() : undefined) ?? k.base.kyberLastResort;
    return structuredClone({
      deviceId: address.deviceId,
      registrationId: k.base.registrationId,
      identityKey: k.base.identityKey,
      signedPreKey: k.base.signedPreKey,
      kyberPreKey,
      ...(preKey ? { preKey } : {}),
    });
  }

  async registrations(userId: string): Promise<Registration[]> {
    this.#check();
    return (await this.listDevices(userId)).flatMap((d) => {
      const k = this.#keys.get(addrKey({ userId, deviceId: d.deviceId }));
      return k ? [{ deviceId: d.deviceId, registrationId: k.base.registrationId }] : [];
    });
  }

  async registerPeer(address: Address, next: (prev: PeerRecord | undefined) => PeerRecord): Promise<PeerRecord> {
    this.#check();
    const key = addrKey(address);
    const prev = this.#peers.get(key);
    const record = next(prev && structuredClone(prev));
    this.#peers.set(key, record);
    return structuredClone(record);
  }

  async heartbeatPeer(address: Address, now: number, ttlMs: number): Promise<PeerRecord | undefined> {
    this.#check();
    const p = this.#peers.get(addrKey(address));
    if (!p || p.expiresAt <= now) return undefined;
    p.expiresAt = now + ttlMs;
    return structuredClone(p);
  }

  async unregisterPeer(address: Address): Promise<boolean> {
    this.#check();
    return this.#peers.delete(addrKey(address));
  }

  async listPeers(now: number): Promise<PeerRecord[]> {
    this.#check();
    return [...this.#peers.values()].filter((p) => p.expiresAt > now).map((p) => structuredClone(p));
  }

  async recordVerdict(peerId: string, now: number, apply: (peer: PeerRecord) => PeerRecord): Promise<PeerRecord | undefined> {
    this.#check();
    for (const [key, p] of this.#peers) {
      if (p.peerId !== peerId || p.expiresAt <= now) continue;
      const next = apply(structuredClone(p));
      this.#peers.set(key, next);
      return structuredClone(next);
    }
    return undefined;
  }

  async claimNonce(scope: string, nonce: string, expiresAt: number): Promise<boolean> {
    this.#check();
    return this.#nonces.claim(scope, nonce, expiresAt);
  }

  async takeTokens(key: string, cost: number, policy: BucketPolicy, now: number): Promise<TakeResult> {
    this.#check();
    return this.#buckets.take(key, cost, policy, now);
  }

  async enqueue(recipients: readonly Recipient[], message: EnqueueInput, limits: QueueLimits, options?: EnqueueOptions): Promise<EnqueueResult> {
    this.#check();
    const limited = checkBeforeEnqueue(this.#limits, recipients, options);
    if (limited) return limited;
    const sizes = recipients.map((r) => base64Bytes(r.payload ?? message.payload));
    const dedupeKeys = recipients.map(
      (r) => `${addrKey(r)}|${message.from.userId}:${message.from.deviceId}|${message.clientId}`,
    );
    const seen = dedupeKeys.map((k) => this.#dedupe.get(k));
    if (seen.some((s) => s && s.digest !== message.digest)) throw new LanternError('LA_ERR_MESSAGE_ID_CONFLICT');
    const skipped: SkippedDevice[] = [];
    let stored = 0;
    recipients.forEach((r, i) => {
      if (seen[i] !== undefined) return;
      const reason = this.#dormant(r, options?.dormantBefore) ? 'dormant' : skipReason(this.#stats(r), this.#stats(r, message.from.userId), sizes[i]!, limits);
      if (reason) return void skipped.push({ deviceId: r.deviceId, reason });
      let q = this.#queues.get(addrKey(r));
      if (!q) this.#queues.set(addrKey(r), (q = new Map()));
      const id = randomUUID();
      q.set(id, {
        id,
        from: { ...message.from },
        sentAt: message.sentAt,
        type: r.type ?? message.type,
        payload: r.payload ?? message.payload,
        expiresAt: message.expiresAt,
        bytes: sizes[i]!,
      });
      this.#dedupe.set(dedupeKeys[i]!, { digest: message.digest, expiresAt: message.expiresAt });
      stored++;
    });
    const status = enqueueStatus(stored, seen.filter((x) => x !== undefined).length);
    return skipped.length ? { status, skipped } : { status };
  }

  #dormant(address: Address, dormantBefore: number | undefined): boolean {
    const d = this.#devices.get(address.userId)?.get(address.deviceId);
    return d !== undefined && isDormant(this.#polled.get(addrKey(address)), d.createdAt, dormantBefore);
  }

  /** Messages and bytes in the queue (of one sender user when given). */
  #stats(address: Address, fromUserId?: string): QueueStats {
    const q = this.#queues.get(addrKey(address));
    let count = 0;
    let bytes = 0;
    for (const m of q?.values() ?? []) {
      if (fromUserId !== undefined && m.from.userId !== fromUserId) continue;
      count++;
      bytes += m.bytes;
    }
    return { count, bytes };
  }

  async recordPoll(address: Address, now: number): Promise<void> {
    this.#check();
    this.#polled.set(addrKey(address), now);
  }

  async fetch(address: Address, limit: number): Promise<{ messages: StoredMessage[]; more: boolean }> {
    this.#check();
    const all = [...(this.#queues.get(addrKey(address))?.values() ?? [])];
    const messages = all.slice(0, limit).map(({ expiresAt: _e, bytes: _b, ...m }) => structuredClone(m));
    return { messages, more: all.length > limit };
  }

  async ack(address: Address, ids: readonly string[]): Promise<number> {
    this.#check();
    const q = this.#queues.get(addrKey(address));
    let n = 0;
    for (const id of new Set(ids)) if (q?.delete(id)) n++;
    return n;
  }

  async queueStats(address: Address): Promise<QueueStats> {
    this.#check();
    return this.#stats(address);
  }

  async queuedMessages(): Promise<number> {
    this.#check();
    let n = 0;
    for (const q of this.#queues.values()) n += q.size;
    return n;
  }

  async expire(now: number, options?: ExpireOptions): Promise<ExpireResult> {
    this.#check();
    let messages = 0;
    for (const [key, q] of this.#queues) {
      const [userId, deviceId] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
      const dormant = this.#dormant({ userId, deviceId }, options?.dormantBefore);
      for (const [id, m] of q) {
        if (dormant || m.expiresAt <= now) {
          q.delete(id);
          messages++;
        }
      }
    }
    for (const [k, d] of this.#dedupe) if (d.expiresAt <= now) this.#dedupe.delete(k);
    this.#nonces.prune(now);
    for (const [k, sess] of this.#sessions) if (sess.expiresAt <= now) this.#sessions.delete(k);
    return { messages };
  }
}
