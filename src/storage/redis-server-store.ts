import { randomBytes } from 'node:crypto';
import { LanternError } from '../core/errors.js';
import type { Address, DeviceBundle, KeyCounts, KeysUpload } from '../protocol/messages.js';
import { MAX_DEVICE_ID, MIN_DEVICE_ID } from '../protocol/version.js';
import { ReplicaWait } from './redis-replica-wait.js';
import { isCluster, openRedis, type RedisConnection, type RedisEndpoint } from './redis-client.js';
import { ACK, CLAIM_SESSION_NONCE, COMPARE_AND_SET, ENQUEUE, EXPIRE_DORMANT, EXPIRE_QUEUE, FETCH, PUT_DEVICE, PUT_KEYS, REGISTRATIONS, REVOKE_DEVICE, TAKE_BUNDLE, TAKE_TOKENS } from './redis-scripts.js';
import {
  base64Bytes,
  sessionsBeyond,
  type AccountRecord,
  type BucketPolicy,
  type DeviceCredential,
  type DeviceRecord,
  type EnqueueInput,
  type EnqueueOptions,
  type EnqueueResult,
  type ExpireOptions,
  type ExpireResult,
  type PeerRecord,
  type QueueLimits,
  type QueueStats,
  type Recipient,
  type Registration,
  type ServerStore,
  type SessionRecord,
  type SkippedDevice,
  type SkipReason,
  type StoredMessage,
  type TakeResult,
} from './server-store.js';

export interface RedisStoreOptions extends RedisEndpoint {
  /** Prefix of every key (several stores may share a database, as the tests do). */
  prefix?: string;
  /**
   * When given, a send publishes 'message' on each recipient's channel (the Redis channel name of
   * deviceChannel, as RedisNotifier names it) in the same script that queues it, and says so
   * (`notified`): one round trip, and no wake-up lost if this process dies in between.
   */
  wakeChannels?: (recipient: Address) => string;
  /**
   * `--store-wait-replicas`: a write that must survive a failover (a send, a device, keys, an
   * account) is answered only once this many replicas have it (WAIT, up to WAIT_TIMEOUT_MS; fewer
   * is LA_ERR_STORE_UNAVAILABLE, and the client's retry with the same id is deduped). An ack does
   * not wait: a lost ack only delivers the message again, which the client drops by its id.
   */
  waitReplicas?: number;
}

/** How long a write waits for its replicas (`waitReplicas`) before it is answered as failed. */
const WAIT_TIMEOUT_MS = 2000;

interface RedisMessage extends StoredMessage {
  expiresAt: number;
  bytes: number;
}

type Scripts = Record<'enqueue' | 'claimSessionNonce' | 'registrations' | 'fetchQueue' | 'ack' | 'expireQueue' | 'expireDormant' | 'putDevice' | 'revokeDevice' | 'putKeys' | 'takeBundle' | 'takeTokens' | 'cas', (...args: Array<string | number>) => Promise<unknown>>;

/** How many times a compare-and-set update is retried under contention. */
const CAS_ATTEMPTS = 20;
/** Expired peer registrations are kept this long (a re-registration then keeps its peer id). */
const PEER_GRACE_MS = 24 * 3600_000;

/**
 * Records that stop counting at `expiresAt` (by the caller's clock) expire in Redis at that time.
 * Callers may pass their own clock (tests pass logical times, long past by the wall clock): such a
 * record is kept a day for the caller's own sweep (`expire(now)`, which finds it through an index)
 * and checked against the caller's time meanwhile.
 */
const inPast = (expiresAt: number) => expiresAt <= Date.now();
const gcAt = (expiresAt: number) => (inPast(expiresAt) ? Date.now() + 24 * 3600_000 : expiresAt);

/**
 * ServerStore on Redis, shared by several server processes (see DESIGN.md "Scale-out"): per-device
 * queues (a sorted set of ids and a hash of messages), atomic steps as Lua scripts (send with dedupe
 * and quota check, ack, prekey pop, token buckets, device ids), native expiry for sessions, nonces,
 * dedupe records and buckets. All keys of a user share the hash tag `{userId}`, so the scripts run
 * on Redis Cluster too. Wake-ups go through RedisNotifier (pub/sub).
 */
export class RedisServerStore implements ServerStore {
  readonly #o: RedisStoreOptions;
  #redis!: RedisConnection;
  #s!: Scripts;
  /** With `waitReplicas`: the WAITs, on a connection of their own. */
  #replicaWait: ReplicaWait | undefined;
  readonly #p: string;
  #queuedDelta = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: RedisStoreOptions) {
    this.#o = options;
    this.#p = options.prefix ?? 'la:';
  }

  async open(): Promise<void> {
    // No auto-pipelining: it holds new commands while a batch awaits its replies (measured: slower).
    const connect = async () => {
      const r = await openRedis(this.#o, { lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true });
      r.on('error', () => undefined); // surfaced per call as LA_ERR_STORE_UNAVAILABLE
      // numberOfKeys given: the leading arguments are KEYS; without it (enqueue) the first argument says how many.
      const define = (name: keyof Scripts, lua: string, numberOfKeys?: number) => r.defineCommand(name, { lua, ...(numberOfKeys !== undefined ? { numberOfKeys } : {}) });
      // On a cluster, wake-ups go over sharded pub/sub (see RedisNotifier), on the slot of the recipient's keys.
      define('enqueue', isCluster(r) ? ENQUEUE.replaceAll("redis.call('PUBLISH'", "redis.call('SPUBLISH'") : ENQUEUE);
      define('fetchQueue', FETCH, 2);
      define('ack', ACK, 4);
      define('expireQueue', EXPIRE_QUEUE, 4);
      define('expireDormant', EXPIRE_DORMANT, 6);
      define('putDevice', PUT_DEVICE, 1);
      define('revokeDevice', REVOKE_DEVICE, 9);
      define('putKeys', PUT_KEYS, 3);
      define('takeBundle', TAKE_BUNDLE, 3);
      define('takeTokens', TAKE_TOKENS, 1);
      define('cas', COMPARE_AND_SET, 1);
      define('claimSessionNonce', CLAIM_SESSION_NONCE, 2);
      define('registrations', REGISTRATIONS, 2);
      return r;
    };
    this.#redis = await connect();
    this.#s = this.#redis as unknown as Scripts;
    // WAIT holds its connection until the replicas answer (up to WAIT_TIMEOUT_MS, and all of it on
    // a shard whose replica is gone): the WAITs get a connection of their own (see ReplicaWait), so
    // no write, read, nonce or rate limit queues behind one.
    if ((this.#o.waitReplicas ?? 0) > 0) {
      const waits = await connect().catch(async (err: unknown) => {
        this.#redis.disconnect();
        throw err;
      });
      this.#replicaWait = new ReplicaWait(waits, { replicas: this.#o.waitReplicas!, timeoutMs: WAIT_TIMEOUT_MS, prefix: this.#p });
    }
  }

  async close(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    if (!this.#redis) return;
    await this.#flushQueued().catch(() => undefined);
    await this.#replicaWait?.close();
    await this.#redis.quit().catch(() => this.#redis.disconnect());
  }

  /**
   * The shared count of queued messages (a metric) changes with every send and ack; the changes are
   * summed here and written once a second, so they cost no command per message.
   */
  #countQueued(delta: number): void {
    if (delta === 0) return;
    this.#queuedDelta += delta;
    this.#flushTimer ??= setTimeout(() => void this.#flushQueued().catch(() => undefined), 1000);
    this.#flushTimer.unref?.();
  }

  async #flushQueued(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const delta = this.#queuedDelta;
    this.#queuedDelta = 0;
    if (delta !== 0) await this.#redis.incrby(`${this.#p}stats:queued`, delta);
  }

  async #run<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (LanternError.is(err)) throw err;
      throw new LanternError('LA_ERR_STORE_UNAVAILABLE', `Redis: ${(err as Error).message}`, { cause: err });
    }
  }

  // ---- key names: everything of one user under the tag {userId}
  #dev = (userId: string) => `${this.#p}dev:{${userId}}`;
  /** When each device of the user last polled (recordPoll). */
  #polled = (userId: string) => `${this.#p}polled:{${userId}}`;
  #q = (a: Address, part: 'q' | 'm' | 'b' | 'seq' | 'x') => `${this.#p}${part}:{${a.userId}}:${a.deviceId}`;
  /** A user's key records: `<prefix><deviceId>`. */
  #keysOf = (userId: string, part: 'k' | 'pk' | 'kpk') => `${this.#p}${part}:{${userId}}:`;
  #keys = (a: Address, part: 'k' | 'pk' | 'kpk') => `${this.#keysOf(a.userId, part)}${a.deviceId}`;
  #peer = (a: Address) => `${this.#p}peer:{${a.userId}}:${a.deviceId}`;
  #sess = (id: string) => `${this.#p}sess:{${id}}`;
  /** Nonces of a session share its tag (claimed together with the session check). */
  #nonce = (key: string) => `${this.#p}nonce:${key}`;
  #devSessions = (a: Address) => `${this.#p}dsess:{${a.userId}}:${a.deviceId}`;
  #queueKeys = (a: Address) => [this.#q(a, 'q'), this.#q(a, 'm'), this.#q(a, 'b'), this.#q(a, 'x')];

  async createAccount(account: AccountRecord): Promise<void> {
    await this.#run(async () => {
      const set = await this.#redis.set(`${this.#p}acct:${account.name}`, JSON.stringify(account), 'NX');
      if (set !== 'OK') throw new LanternError('LA_ERR_ACCOUNT_EXISTS');
      await this.#redis.set(`${this.#p}acctid:${account.userId}`, account.name);
      await Promise.all([this.#replicated(`${this.#p}acct:${account.name}`), this.#replicated(`${this.#p}acctid:${account.userId}`)]);
    });
  }

  async getAccount(name: string): Promise<AccountRecord | undefined> {
    return this.#run(async () => parse<AccountRecord>(await this.#redis.get(`${this.#p}acct:${name}`)));
  }

  async getAccountByUserId(userId: string): Promise<AccountRecord | undefined> {
    const name = await this.#run(() => this.#redis.get(`${this.#p}acctid:${userId}`));
    return name === null ? undefined : this.getAccount(name);
  }

  async disableAccount(name: string, now: number): Promise<boolean> {
    return this.#run(() =>
      this.#update<AccountRecord>(`${this.#p}acct:${name}`, (a) => (a ? { ...a, disabledAt: a.disabledAt ?? now } : undefined)).then((a) => a !== undefined),
    );
  }

  async putDevice(userId: string, credential: DeviceCredential, now: number, deviceId?: number): Promise<DeviceRecord> {
    const template: DeviceRecord = { ...credential, userId, deviceId: 0, createdAt: now };
    const out = await this.#run(
      () => this.#s.putDevice(this.#dev(userId), JSON.stringify(template), now, deviceId ?? '', MIN_DEVICE_ID, MAX_DEVICE_ID) as Promise<string>,
    );
    if (out === 'not-found') throw new LanternError('LA_ERR_DEVICE_NOT_FOUND');
    if (out === 'limit') throw new LanternError('LA_ERR_DEVICE_LIMIT');
    const record = JSON.parse(out) as DeviceRecord;
    await this.#run(() => this.#replicated(this.#dev(userId)));
    if (deviceId !== undefined) await this.#endSessions({ userId, deviceId });
    return record;
  }

  async getDevice(userId: string, deviceId: number): Promise<DeviceRecord | undefined> {
    return this.#run(async () => parse<DeviceRecord>(await this.#redis.hget(this.#dev(userId), String(deviceId))));
  }

  async listDevices(userId: string): Promise<DeviceRecord[]> {
    const all = await this.#run(() => this.#redis.hgetall(this.#dev(userId)));
    return Object.values(all)
      .map((v) => JSON.parse(v) as DeviceRecord)
      .filter((d) => d.revokedAt === undefined)
      .sort((a, b) => a.deviceId - b.deviceId);
  }

  async revokeDevice(userId: string, deviceId: number, now: number): Promise<boolean> {
    const a = { userId, deviceId };
    const deleted = Number(
      await this.#run(() =>
        this.#s.revokeDevice(this.#dev(userId), ...this.#queueKeys(a), this.#keys(a, 'k'), this.#keys(a, 'pk'), this.#keys(a, 'kpk'), this.#peer(a), deviceId, now),
      ),
    );
    if (deleted < 0) return false;
    this.#countQueued(-deleted);
    await this.#endSessions(a);
    return true;
  }

  async #endSessions(a: Address): Promise<void> {
    await this.#run(async () => {
      const ids = await this.#redis.smembers(this.#devSessions(a));
      await this.#delEach([...ids.map((id) => this.#sess(id)), this.#devSessions(a)]);
    });
  }

  /** Deletes keys with one DEL each: the keys may lie in different cluster slots. */
  async #delEach(keys: string[]): Promise<void> {
    await this.#perKey('del', keys);
  }

  /**
   * One command per key, answers in order: one pipeline on a single Redis; on a cluster each
   * command goes to the node of its key's slot (a pipeline, like MGET, must stay on one node).
   */
  async #perKey<C extends 'get' | 'del'>(command: C, keys: string[]): Promise<Array<C extends 'get' ? string | null : number>> {
    type Answer = C extends 'get' ? string | null : number;
    if (keys.length === 0) return [];
    if (isCluster(this.#redis)) return (await Promise.all(keys.map((k) => this.#redis[command](k)))) as Answer[];
    const pipeline = this.#redis.pipeline();
    for (const key of keys) pipeline[command](key);
    return ((await pipeline.exec()) ?? []).map(([err, value]) => {
      if (err) throw err;
      return value as Answer;
    });
  }

  /**
   * With `waitReplicas`: returns once that many replicas have every write answered so far by
   * `key`'s node (one WAIT for all the writes that ask meanwhile).
   */
  async #replicated(key: string): Promise<void> {
    if (this.#replicaWait) await this.#replicaWait.after(key);
  }

  async putSession(session: SessionRecord, keep?: number): Promise<void> {
    await this.#run(async () => {
      await this.#redis.set(this.#sess(session.id), JSON.stringify(session), 'PXAT', gcAt(session.expiresAt));
      await this.#redis.sadd(this.#devSessions(session), session.id);
      if (inPast(session.expiresAt)) await this.#redis.zadd(`${this.#p}sessx`, session.expiresAt, session.id);
      if (keep === undefined) return;
      // Instances may open sessions of one device at once: each trims to `keep`, so at most a few more live a moment.
      const ids = await this.#redis.smembers(this.#devSessions(session));
      if (ids.length <= keep) return;
      const raw = await this.#perKey('get', ids.map((id) => this.#sess(id)));
      const mine = ids.flatMap((_id, i) => (raw[i] ? [parse<SessionRecord>(raw[i]!)!] : []));
      const ended = sessionsBeyond(mine, keep).map((s) => s.id);
      const gone = ids.filter((_id, i) => !raw[i]);
      if (ended.length) await this.#delEach(ended.map((id) => this.#sess(id)));
      if (ended.length + gone.length) await this.#redis.srem(this.#devSessions(session), ...ended, ...gone);
    });
  }

  async getSession(id: string, now: number): Promise<SessionRecord | undefined> {
    const s = await this.#run(async () => parse<SessionRecord>(await this.#redis.get(this.#sess(id))));
    return s && s.expiresAt > now ? s : undefined;
  }

  async putKeys(address: Address, keys: KeysUpload): Promise<void> {
    const { preKeys, kyberPreKeys, ...base } = keys;
    const pre = (preKeys ?? []).map((k) => JSON.stringify(k));
    const kyber = (kyberPreKeys ?? []).map((k) => JSON.stringify(k));
    await this.#run(() =>
      this.#s.putKeys(
        this.#keys(address, 'k'),
        this.#keys(address, 'pk'),
        this.#keys(address, 'kpk'),
        JSON.stringify(base),
        base.identityKey,
        base.registrationId,
        pre.length,
        kyber.length,
        ...pre,
        ...kyber,
      ),
    );
    await this.#run(() => this.#replicated(this.#keys(address, 'k')));
  }

  async keyCounts(address: Address): Promise<KeyCounts> {
    const [pre, kyber] = await this.#run(() => Promise.all([this.#redis.llen(this.#keys(address, 'pk')), this.#redis.llen(this.#keys(address, 'kpk'))]));
    return { preKeys: pre, kyberPreKeys: kyber };
  }

  async takeBundle(address: Address, options?: { oneTime?: boolean }): Promise<DeviceBundle | undefined> {
    const oneTime = options?.oneTime ?? true ? '1' : '0';
    const out = (await this.#run(() => this.#s.takeBundle(this.#keys(address, 'k'), this.#keys(address, 'pk'), this.#keys(address, 'kpk'), oneTime))) as [string, string, string] | null;
    if (!out) return undefined;
    const base = JSON.parse(out[0]) as Omit<KeysUpload, 'preKeys' | 'kyberPreKeys'>;
    return {
      deviceId: address.deviceId,
      registrationId: base.registrationId,
      identityKey: base.identityKey,
      signedPreKey: base.signedPreKey,
      kyberPreKey: out[2] ? JSON.parse(out[2]) : base.kyberLastResort,
      ...(out[1] ? { preKey: JSON.parse(out[1]) } : {}),
    };
  }

  async registrations(userId: string): Promise<Registration[]> {
    // One script: a device-mode (E2EE) send checks these before every write.
    const flat = (await this.#run(() => this.#s.registrations(this.#dev(userId), this.#keysOf(userId, 'k')))) as number[];
    const out: Registration[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push({ deviceId: flat[i]!, registrationId: flat[i + 1]! });
    return out.sort((a, b) => a.deviceId - b.deviceId);
  }

  /** Read-modify-write of one JSON key with compare-and-set, retried under contention. */
  async #update<T>(key: string, change: (prev: T | undefined) => T | undefined, pxat?: (next: T) => number): Promise<T | undefined> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const raw = (await this.#redis.get(key)) ?? '';
      const next = change(raw ? (JSON.parse(raw) as T) : undefined);
      if (next === undefined) return undefined;
      const json = JSON.stringify(next);
      if (Number(await this.#s.cas(key, raw, json, pxat ? pxat(next) : ''))) return next;
    }
    throw new LanternError('LA_ERR_STORE_UNAVAILABLE', `Too much contention on ${key}`);
  }

  async registerPeer(address: Address, next: (prev: PeerRecord | undefined) => PeerRecord): Promise<PeerRecord> {
    const record = await this.#run(() => this.#update<PeerRecord>(this.#peer(address), next, (p) => gcAt(p.expiresAt + PEER_GRACE_MS)));
    await this.#run(async () => {
      await this.#redis.sadd(`${this.#p}peers`, `${address.userId}:${address.deviceId}`);
      await this.#redis.set(`${this.#p}peerid:${record!.peerId}`, `${address.userId}:${address.deviceId}`, 'PXAT', gcAt(record!.expiresAt + PEER_GRACE_MS));
    });
    return record!;
  }

  async heartbeatPeer(address: Address, now: number, ttlMs: number): Promise<PeerRecord | undefined> {
    return this.#run(() =>
      this.#update<PeerRecord>(this.#peer(address), (p) => (p && p.expiresAt > now ? { ...p, expiresAt: now + ttlMs } : undefined), (p) => gcAt(p.expiresAt + PEER_GRACE_MS)),
    );
  }

  async unregisterPeer(address: Address): Promise<boolean> {
    return this.#run(async () => {
      const n = await this.#redis.del(this.#peer(address));
      await this.#redis.srem(`${this.#p}peers`, `${address.userId}:${address.deviceId}`);
      return n > 0;
    });
  }

  async listPeers(now: number): Promise<PeerRecord[]> {
    return this.#run(async () => {
      const members = await this.#redis.smembers(`${this.#p}peers`);
      const addresses = members.map((m) => {
        const i = m.lastIndexOf(':');
        return { userId: m.slice(0, i), deviceId: Number(m.slice(i + 1)) };
      });
      const rows = await this.#perKey('get', addresses.map((a) => this.#peer(a)));
      const out: PeerRecord[] = [];
      const gone: string[] = [];
      rows.forEach((raw, i) => {
        if (typeof raw !== 'string') gone.push(members[i]!);
        else {
          const p = JSON.parse(raw) as PeerRecord;
          if (p.expiresAt > now) out.push(p);
        }
      });
      if (gone.length) await this.#redis.srem(`${this.#p}peers`, ...gone);
      return out;
    });
  }

  async recordVerdict(peerId: string, now: number, apply: (peer: PeerRecord) => PeerRecord): Promise<PeerRecord | undefined> {
    return this.#run(async () => {
      const where = await this.#redis.get(`${this.#p}peerid:${peerId}`);
      if (!where) return undefined;
      const i = where.lastIndexOf(':');
      const address = { userId: where.slice(0, i), deviceId: Number(where.slice(i + 1)) };
      return this.#update<PeerRecord>(
        this.#peer(address),
        (p) => (p && p.peerId === peerId && p.expiresAt > now ? apply(p) : undefined),
        (p) => gcAt(p.expiresAt + PEER_GRACE_MS),
      );
    });
  }

  async claimNonce(scope: string, nonce: string, expiresAt: number): Promise<boolean> {
    const key = `${scope}:${nonce}`;
    return this.#run(async () => {
      // A real nonce lives exactly its window in Redis: one command per request, nothing kept longer.
      const [claimed] = await Promise.all([this.#redis.set(this.#nonce(key), '1', 'PXAT', gcAt(expiresAt), 'NX'), this.#indexNonce(key, expiresAt)]);
      return claimed === 'OK';
    });
  }

  async claimSessionNonce(id: string, nonce: string, expiresAt: number, now: number): Promise<'claimed' | 'replayed' | 'ended'> {
    const tagged = `{${id}}:${nonce}`;
    return this.#run(async () => {
      const [out] = await Promise.all([this.#s.claimSessionNonce(this.#sess(id), this.#nonce(tagged), gcAt(expiresAt), now), this.#indexNonce(tagged, expiresAt)]);
      return out as 'claimed' | 'replayed' | 'ended';
    });
  }

  /** Nonces that Redis keeps past their time (logical clocks, see gcAt) are swept by expire(). */
  #indexNonce(key: string, expiresAt: number): Promise<unknown> | undefined {
    return inPast(expiresAt) ? this.#redis.zadd(`${this.#p}noncex`, expiresAt, key) : undefined;
  }

  async takeTokens(key: string, cost: number, policy: BucketPolicy, now: number): Promise<TakeResult> {
    const [ok, retry] = (await this.#run(() => this.#s.takeTokens(`${this.#p}tb:${key}`, cost, policy.capacity, policy.refillPerSecond, now))) as [number, number?];
    if (ok === 1) return { ok: true };
    return { ok: false, retryAfterMs: retry === -1 || retry === undefined ? Number.MAX_SAFE_INTEGER : retry };
  }

  async enqueue(recipients: readonly Recipient[], message: EnqueueInput, limits: QueueLimits, options?: EnqueueOptions): Promise<EnqueueResult> {
    if (recipients.length === 0) return { status: 'queued' };
    const userId = recipients[0]!.userId;
    if (recipients.some((r) => r.userId !== userId)) {
      // One script runs in one hash slot: a send goes to the devices of one user.
      throw new LanternError('LA_ERR_INTERNAL', 'The Redis store queues a message for one user at a time');
    }
    const buckets = options?.buckets ?? [];
    const wake = this.#o.wakeChannels !== undefined;
    const keys: string[] = [];
    const args: Array<string | number> = [
      recipients.length,
      message.digest,
      message.expiresAt,
      limits.maxMessages,
      limits.maxBytes,
      message.from.userId,
      message.from.deviceId,
      message.sentAt,
      `${message.from.userId}:${message.from.deviceId}|${message.clientId}`,
      gcAt(message.expiresAt),
      options?.activeDevicesOnly ? '1' : '',
      options?.now ?? Date.now(),
      buckets.length,
      wake ? '1' : '',
      limits.perSender?.maxMessages ?? '',
      limits.perSender?.maxBytes ?? '',
      options?.dormantBefore ?? '',
    ];
    for (const r of recipients) {
      keys.push(this.#q(r, 'q'), this.#q(r, 'm'), this.#q(r, 'b'), this.#q(r, 'seq'), this.#q(r, 'x'));
      args.push(base64Bytes(r.payload ?? message.payload), r.type ?? message.type, r.payload ?? message.payload, randomBytes(4).toString('hex'), r.deviceId);
    }
    keys.push(this.#dev(userId), this.#polled(userId));
    for (const b of buckets) {
      // With the recipient's keys (one slot); these buckets are only ever taken by sends.
      keys.push(`${this.#p}tb:{${userId}}:${b.key}`);
      args.push(b.cost, b.policy.capacity, b.policy.refillPerSecond);
    }
    if (wake) args.push(...recipients.map((r) => this.#o.wakeChannels!(r)));
    // Indexed for the retention job before the messages exist (issued first on the same connection,
    // so it lands first), so none can be missed.
    const indexed = this.#redis.sadd(`${this.#p}expq`, ...recipients.map((r) => `${r.userId}:${r.deviceId}`));
    indexed.catch(() => undefined); // awaited below; never an unhandled rejection
    const out = (await this.#run(() => this.#s.enqueue(keys.length, ...keys, ...args))) as [string, ...Array<number | string>];
    await this.#run(() => indexed);
    if (out[0] === 'queued' || out[0] === 'duplicate') await this.#run(() => this.#replicated(keys[0]!));
    const notified = wake ? ({ notified: true } as const) : {};
    switch (out[0]) {
      case 'conflict':
        throw new LanternError('LA_ERR_MESSAGE_ID_CONFLICT');
      case 'gone':
        throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such device');
      case 'limited': {
        const [bucket, retry] = [Number(out[1] ?? 1), Number(out[2] ?? -1)];
        return { status: 'limited', bucket: bucket - 1, retryAfterMs: retry === -1 ? Number.MAX_SAFE_INTEGER : retry };
      }
      default: {
        const status = out[0] as 'queued' | 'duplicate' | 'skipped';
        const skipped: SkippedDevice[] = [];
        for (let i = 1; i + 1 < out.length; i += 2) skipped.push({ deviceId: Number(out[i]), reason: out[i + 1] as SkipReason });
        if (status === 'queued') this.#countQueued(recipients.length - skipped.length);
        return { status, ...notified, ...(skipped.length ? { skipped } : {}) };
      }
    }
  }

  async recordPoll(address: Address, now: number): Promise<void> {
    await this.#run(() => this.#redis.hset(this.#polled(address.userId), String(address.deviceId), now));
  }

  async fetch(address: Address, limit: number): Promise<{ messages: StoredMessage[]; more: boolean }> {
    return this.#run(async () => {
      const raws = (await this.#s.fetchQueue(this.#q(address, 'q'), this.#q(address, 'm'), limit)) as string[];
      const messages = raws.slice(0, limit).flatMap((raw) => {
        if (!raw) return []; // acked meanwhile
        const { expiresAt: _e, bytes: _b, ...m } = JSON.parse(raw) as RedisMessage;
        return [m];
      });
      return { messages, more: raws.length > limit };
    });
  }

  async ack(address: Address, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    // No WAIT (see waitReplicas): it would hold the poll that carries the ack.
    const n = Number(await this.#run(() => this.#s.ack(...this.#queueKeys(address), ...new Set(ids))));
    this.#countQueued(-n);
    return n;
  }

  async queueStats(address: Address): Promise<QueueStats> {
    const [count, bytes] = await this.#run(() => Promise.all([this.#redis.zcard(this.#q(address, 'q')), this.#redis.get(this.#q(address, 'b'))]));
    return { count, bytes: Number(bytes ?? 0) };
  }

  async queuedMessages(): Promise<number> {
    await this.#flushQueued();
    return Math.max(0, Number((await this.#run(() => this.#redis.get(`${this.#p}stats:queued`))) ?? 0));
  }

  async expire(now: number, options?: ExpireOptions): Promise<ExpireResult> {
    // Sessions and nonces whose time has passed (by the caller's clock).
    for (const [index, key] of [
      [`${this.#p}sessx`, this.#sess],
      [`${this.#p}noncex`, this.#nonce],
    ] as const) {
      for (;;) {
        const due = await this.#run(() => this.#redis.zrangebyscore(index, '-inf', now, 'LIMIT', 0, 1000));
        if (due.length === 0) break;
        await this.#run(async () => {
          await this.#delEach(due.map((id) => key(id)));
          await this.#redis.zrem(index, ...due);
        });
      }
    }
    let messages = 0;
    const members = await this.#run(() => this.#redis.smembers(`${this.#p}expq`));
    for (const member of members) {
      const i = member.lastIndexOf(':');
      const a = { userId: member.slice(0, i), deviceId: Number(member.slice(i + 1)) };
      if (options?.dormantBefore !== undefined) {
        const dropped = (await this.#run(() => this.#s.expireDormant(this.#dev(a.userId), this.#polled(a.userId), ...this.#queueKeys(a), a.deviceId, options.dormantBefore!))) as number;
        messages += dropped;
        this.#countQueued(-dropped);
      }
      for (;;) {
        const [deleted, left] = (await this.#run(() => this.#s.expireQueue(...this.#queueKeys(a), now))) as [number, number];
        messages += deleted;
        this.#countQueued(-deleted);
        if (left === 0) {
          // Out of the index; put back if a send indexed it meanwhile and its messages landed.
          await this.#run(() => this.#redis.srem(`${this.#p}expq`, member));
          if ((await this.#run(() => this.#redis.zcard(this.#q(a, 'x')))) > 0) await this.#run(() => this.#redis.sadd(`${this.#p}expq`, member));
        }
        if (deleted < 1000) break;
      }
    }
    return { messages };
  }
}

function parse<T>(raw: string | null): T | undefined {
  return raw === null ? undefined : (JSON.parse(raw) as T);
}
