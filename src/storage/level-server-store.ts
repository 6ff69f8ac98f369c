import { randomUUID } from 'node:crypto';
import { Level } from 'level';
import { LanternError } from '../core/errors.js';
import { KeyedMutex } from '../core/keyed-mutex.js';
import type { Address, DeviceBundle, KeyCounts, KeysUpload, KyberPreKeyUpload, PreKeyUpload } from '../protocol/messages.js';
import { BloomFilter } from './bloom-filter.js';
import { GroupCommit, type LevelOp } from './group-commit.js';
import { levelError } from './level-errors.js';
import { RecentNonces } from './recent-nonces.js';
import {
  base64Bytes,
  type AccountRecord,
  type BucketPolicy,
  type DeviceCredential,
  type DeviceRecord,
  checkBeforeEnqueue,
  deviceIdFor,
  sessionsBeyond,
  claimSessionNonceInProcess,
  type EnqueueInput,
  type EnqueueOptions,
  type EnqueueResult,
  enqueueStatus,
  type ExpireOptions,
  type ExpireResult,
  isDormant,
  type QueueLimits,
  skipReason,
  type SkippedDevice,
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

/*
 * Key layout (one LevelDB, string keys, JSON values; numbers zero-padded so order is numeric):
 *   a!<name>                          account
 *   u!<userId>                        account name (reverse index)
 *   d!<userId>!<ddd>                  device record
 *   m!<userId>!<ddd>!<seq16>          queued message; its id is `<seq16>-<random>`, so an ack finds it
 *   k!<userId>!<ddd>!<sender>!<clientId>   dedupe record {digest, expiresAt}
 *   x!<expiresAt15>!<n>               expiry index entry -> the keys it retires
 *   n!<minute12>!<scope>:<nonce>      one-time nonce (value: its expiry), bucketed by expiry minute; loaded at open
 *   K!<userId>!<ddd>                  Signal keys: identity, registration id, signed EC + last-resort Kyber
 *   P!<userId>!<ddd>!<keyId10>        one-time EC prekey
 *   Y!<userId>!<ddd>!<keyId10>        one-time Kyber prekey
 *   g!<userId>!<ddd>                  give peer registration
 *   t!<userId>!<ddd>                  when the device last polled (recordPoll)
 *   s!<sessionId>                     LA1S session
 *   S!<userId>!<ddd>!<sessionId>      sessions of a device (to end them on revoke/renew)
 *
 * A message costs three writes (m, k, x) and its ack one delete: the writes of a batch are the
 * group commit's cost. Queue meta (count, bytes, last seq, what each sender holds) is derived
 * from the m! range on a queue's first use. LevelDB admits one process per directory, so this backend may keep derived
 * state (queue meta, recent nonces, sessions, rate-limit buckets) in memory: no other process can see the store at all. The
 * shared backend for several server processes is Redis.
 */

const pad = (n: number, width: number) => String(n).padStart(width, '0');
/** Device ids padded to three digits, made once: a send builds a device's key several times. */
const DEVICE_IDS = Array.from({ length: 1000 }, (_, i) => pad(i, 3));
const dev = (a: Address) => `${a.userId}!${DEVICE_IDS[a.deviceId] ?? pad(a.deviceId, 3)}`;

/**
 * A live key just past each queue's messages (`m!<device>!~`). LevelDB has no upper bound on an
 * iterator: reading a range steps over every deleted entry after the range's last live key until it
 * meets a live one, so without this a fetch on an emptied queue walked through the deletions of the
 * queues that follow it in key order (most of the CPU time of a loaded server).
 */
const QUEUE_END = '!~';

interface QueueMeta {
  count: number;
  bytes: number;
  seq: number;
  /**
   * No message below this seq is stored any more: fetches start their range here, so they do not
   * walk over the deletions of acked messages (LevelDB keeps those until a compaction, and a range
   * read steps over each of them: 50,000 cost 5 ms per fetch).
   */
  head: number;
  /** Messages and bytes per sending user (QueueLimits.perSender). */
  senders: Map<string, QueueStats>;
  /**
   * Every written message of the queue, oldest first, while it is short (KEPT_MESSAGES, and all
   * queues' within KEPT_BYTES): a poll is answered from it without a LevelDB range read, which
   * was the largest single cost of a delivery. Undefined while it is not known to hold them all
   * (the queue grew past the limits), until the queue is empty again.
   */
  kept: LevelMessage[] | undefined;
}

/** Messages kept in memory per queue (QueueMeta.kept)... */
const KEPT_MESSAGES = 64;
/** ...and bytes kept across all queues: payloads as held (base64 text), and a fixed cost per message (the record, its id). */
const KEPT_BYTES = 32 * 1024 * 1024;
const keptCost = (message: LevelMessage) => message.payload.length + 512;

/** A message's place in its queue, counted before its write (given back if the write fails). */
interface Reservation {
  meta: QueueMeta;
  bytes: number;
  stored: LevelMessage;
}

const NO_MESSAGES: QueueStats = Object.freeze({ count: 0, bytes: 0 });

/** Adds `count` messages of `bytes` from `sender` to a queue's meta (negative to remove). */
function countIn(meta: QueueMeta, sender: string, count: number, bytes: number): void {
  meta.count += count;
  meta.bytes += bytes;
  // An empty queue (none stored, none being written) is known whole again.
  if (meta.count === 0) meta.kept ??= [];
  const s = meta.senders.get(sender) ?? { count: 0, bytes: 0 };
  s.count += count;
  s.bytes += bytes;
  if (s.count <= 0) meta.senders.delete(sender);
  else meta.senders.set(sender, s);
}

interface LevelMessage extends StoredMessage {
  expiresAt: number;
  bytes: number;
}

type ExpiryEntry =
  | { kind: 'm'; addr: Address; seq: number; id: string; dedupe: string }
  | { kind: 's'; id: string; addr: Address };

export interface LevelServerStoreOptions {
  /** Directory of the LevelDB database. */
  location: string;
  /** fsync every write batch (default true). Without it, writes survive a process crash, not a power loss. */
  sync?: boolean;
  /** Runs before each write batch; what it throws fails that batch (fault-injection tests only). */
  injectWriteFault?: () => void;
  /** Awaited after each range read (from `gte` on), before its rows are used: a read answered late (race tests only). */
  injectReadDelay?: (gte: string) => Promise<void> | undefined;
}

export class LevelServerStore implements ServerStore {
  readonly #db: Level<string, unknown>;
  readonly #writer: GroupCommit;
  readonly #locks = new KeyedMutex();
  readonly #meta = new Map<string, QueueMeta>();
  /** Queue meta being read (first use of a queue): every caller meanwhile waits for the same read. */
  readonly #metaLoading = new Map<string, Promise<QueueMeta>>();
  readonly #readDelay: ((gte: string) => Promise<void> | undefined) | undefined;
  readonly #recentNonces = new RecentNonces();
  /** Nonces claimed and not yet handed to the writer (see claimNonce). */
  #nonceBatch: Array<[string, number]> | undefined;
  readonly #sessions = new Map<string, SessionRecord>();
  /** Device records by `<userId>!<ddd>` (null: known absent); every request reads one. */
  readonly #deviceCache = new Map<string, DeviceRecord | null>();
  /**
   * Each user's devices with keys and their registration ids, as an end-to-end encrypted send
   * checks them (a range read and a keys record per device, every message, without it). Dropped
   * when a device or its keys change, once the write is done; a read that overlapped such a change
   * is not kept (`#registrationsChanged` counts the changes).
   */
  readonly #registrations = new Map<string, Registration[]>();
  #registrationsChanged = 0;
  /** Dedupe records submitted to the group commit but not yet written. */
  readonly #pendingDedupe = new Map<string, { digest: string; written: Promise<void> }>();
  /** Every dedupe key in the store (built at open): most sends carry a new id and skip the lookup. */
  readonly #dedupeFilter = new BloomFilter();
  /** Messages whose delete (an ack) is submitted and not yet written. */
  readonly #acking = new Set<string>();
  /** Messages in all queues: counted at open, then kept with every change. */
  #queued = 0;
  /** What all queues' kept messages cost (QueueMeta.kept, keptCost). */
  #keptBytes = 0;
  /** Peer id -> its registration's key (a verdict names the peer by id); stale entries are harmless. */
  readonly #peerKeys = new Map<string, string>();
  /** One-time prekeys handed out whose deletion is not written yet. */
  readonly #popped = new Set<string>();
  readonly #poppedWritten: string[] = [];
  readonly #buckets = new Buckets();
  /** What checkBeforeEnqueue reads: devices and rate-limit buckets, both held here. */
  readonly #limits = { deviceNow: (userId: string, deviceId: number) => this.#deviceNow(userId, deviceId), buckets: this.#buckets };
  /** Last poll per device (`t!` records, read on first use; null: never polled). */
  readonly #polled = new Map<string, number | null>();
  /** Queues that may hold messages (found at open, added to by sends): the dormancy sweep's list. */
  readonly #queues = new Set<string>();
  #expirySeq = 0;
  readonly #instance = randomUUID().slice(0, 8);

  constructor(options: LevelServerStoreOptions) {
    this.#db = new Level<string, unknown>(options.location, { valueEncoding: 'json', writeBufferSize: 32 * 1024 * 1024 } as never);
    this.#writer = new GroupCommit(this.#db, { sync: options.sync ?? true, ...(options.injectWriteFault ? { inject: options.injectWriteFault } : {}) });
    this.#readDelay = options.injectReadDelay;
  }

  async open(): Promise<void> {
    try {
      await this.#db.open();
      for await (const key of this.#db.keys({ gte: 'k!', lt: 'k!~' })) this.#dedupeFilter.add(key);
      // Nonces of the last minutes (older ones are swept): a replay after a restart is still one.
      const reclaim = (scopeNonce: string, expiresAt: unknown) => {
        const i = scopeNonce.lastIndexOf(':');
        if (typeof expiresAt === 'number' && i > 0) this.#recentNonces.claim(scopeNonce.slice(0, i), scopeNonce.slice(i + 1), expiresAt);
      };
      for await (const [key, value] of this.#db.iterator({ gte: 'n!', lt: 'n!~' })) {
        if (Array.isArray(value)) for (const pair of value as Array<[string, number]>) reclaim(String(pair[0]), pair[1]);
        else reclaim(key.slice('n!'.length + 12 + 1), value);
      }
      for await (const key of this.#db.keys({ gte: 'm!', lt: 'm!~' })) {
        if (key.endsWith(QUEUE_END)) continue;
        this.#queued++;
        this.#queues.add(key.slice(2, key.lastIndexOf('!')));
      }
      for (const [key, p] of await this.#range<PeerRecord>('g!', 'g!~')) this.#peerKeys.set(p.peerId, key);
    } catch (err) {
      throw levelError(err, 'open server store');
    }
  }

  async close(): Promise<void> {
    try {
      // Writes nobody awaits (nonce records, queue end markers) land before the database closes.
      this.#writeNonces();
      await this.#writer.drain();
      await this.#db.close();
    } catch (err) {
      throw levelError(err, 'close server store');
    }
  }

  /**
   * Point reads are synchronous (classic-level's getSync): they are served from LevelDB's memtable,
   * block cache or the OS page cache in microseconds, far less than a round trip through libuv's
   * thread pool, which profiling showed to be the largest cost per request.
   */
  async #get<T>(key: string): Promise<T | undefined> {
    return this.#getNow<T>(key);
  }

  /** #get without the turn of the event loop an await costs (for the per-send checks). */
  #getNow<T>(key: string): T | undefined {
    try {
      return this.#db.getSync(key) as T | undefined;
    } catch (err) {
      throw levelError(err, 'read');
    }
  }

  async #range<T>(gte: string, lt: string, limit = -1): Promise<Array<[string, T]>> {
    try {
      const rows = (await this.#db.iterator({ gte, lt, limit }).all()) as Array<[string, T]>;
      if (this.#readDelay) await this.#readDelay(gte);
      return rows;
    } catch (err) {
      throw levelError(err, 'read');
    }
  }

  async createAccount(account: AccountRecord): Promise<void> {
    await this.#locks.run('accounts', async () => {
      if ((await this.#get(`a!${account.name}`)) !== undefined) throw new LanternError('LA_ERR_ACCOUNT_EXISTS');
      await this.#writer.write([
        { type: 'put', key: `a!${account.name}`, value: account },
        { type: 'put', key: `u!${account.userId}`, value: account.name },
      ]);
    });
  }

  getAccount(name: string): Promise<AccountRecord | undefined> {
    return this.#get<AccountRecord>(`a!${name}`);
  }

  async getAccountByUserId(userId: string): Promise<AccountRecord | undefined> {
    const name = await this.#get<string>(`u!${userId}`);
    return name === undefined ? undefined : this.getAccount(name);
  }

  async disableAccount(name: string, now: number): Promise<boolean> {
    return this.#locks.run('accounts', async () => {
      const a = await this.getAccount(name);
      if (!a) return false;
      await this.#writer.write([{ type: 'put', key: `a!${name}`, value: { ...a, disabledAt: a.disabledAt ?? now } }]);
      return true;
    });
  }

  async putDevice(userId: string, credential: DeviceCredential, now: number, deviceId?: number): Promise<DeviceRecord> {
    return this.#locks.run(`user:${userId}`, async () => {
      const existing = new Map(
        (await this.#range<DeviceRecord>(`d!${userId}!`, `d!${userId}!~`)).map(([, d]) => [d.deviceId, d]),
      );
      const id = deviceIdFor(existing, deviceId);
      const prev = existing.get(id);
      const record: DeviceRecord = {
        ...credential,
        userId,
        deviceId: id,
        createdAt: deviceId !== undefined && prev ? prev.createdAt : now,
      };
      const ops: LevelOp[] = [{ type: 'put', key: `d!${dev({ userId, deviceId: id })}`, value: record }];
      // A renewal ends the device's sessions.
      const sessions = deviceId !== undefined ? await this.#endSessionsOps({ userId, deviceId: id }) : { ops: [], ids: [] };
      ops.push(...sessions.ops);
      await this.#writer.write(ops);
      this.#registrationsChange(userId);
      this.#cacheDevice(dev({ userId, deviceId: id }), record);
      for (const s of sessions.ids) this.#sessions.delete(s);
      return record;
    });
  }

  async getDevice(userId: string, deviceId: number): Promise<DeviceRecord | undefined> {
    return this.#deviceNow(userId, deviceId);
  }

  #deviceNow(userId: string, deviceId: number, key = dev({ userId, deviceId })): DeviceRecord | undefined {
    const cached = this.#deviceCache.get(key);
    if (cached !== undefined) return cached ?? undefined;
    const record = this.#getNow<DeviceRecord>(`d!${key}`);
    this.#cacheDevice(key, record);
    return record;
  }

  #cacheDevice(key: string, record: DeviceRecord | undefined): void {
    if (this.#deviceCache.size >= 20_000) this.#deviceCache.clear();
    this.#deviceCache.set(key, record ?? null);
  }

  async listDevices(userId: string): Promise<DeviceRecord[]> {
    const all = await this.#range<DeviceRecord>(`d!${userId}!`, `d!${userId}!~`);
    return all.map(([, d]) => d).filter((d) => d.revokedAt === undefined);
  }

  async revokeDevice(userId: string, deviceId: number, now: number): Promise<boolean> {
    const addr = { userId, deviceId };
    return this.#locks.run(`user:${userId}`, () =>
      this.#locks.run(`dev:${dev(addr)}`, async () => {
        const d = await this.getDevice(userId, deviceId);
        if (!d || d.revokedAt !== undefined) return false;
        const revoked = { ...d, revokedAt: now };
        const ops: LevelOp[] = [{ type: 'put', key: `d!${dev(addr)}`, value: revoked }];
        ops.push({ type: 'del', key: `K!${dev(addr)}` }, { type: 'del', key: `g!${dev(addr)}` });
        let messages = 0;
        for (const prefix of ['m', 'k', 'P', 'Y']) {
          for (const [key] of await this.#range(`${prefix}!${dev(addr)}!`, `${prefix}!${dev(addr)}!~`)) {
            ops.push({ type: 'del', key });
            if (prefix === 'm') messages++;
          }
        }
        const sessions = await this.#endSessionsOps(addr);
        ops.push(...sessions.ops);
        // The caches change once the write has succeeded: a failed one leaves them as the disk is.
        await this.#writer.write(ops);
        this.#registrationsChange(userId);
        this.#cacheDevice(dev(addr), revoked);
        this.#queued -= messages;
        const meta = this.#meta.get(dev(addr));
        if (meta) this.#forget(meta);
        this.#meta.delete(dev(addr));
        this.#metaLoading.delete(dev(addr));
        for (const id of sessions.ids) this.#sessions.delete(id);
        return true;
      }),
    );
  }

  /** The writes that end a device's sessions, and their ids (to drop from the cache once written). */
  async #endSessionsOps(addr: Address): Promise<{ ops: LevelOp[]; ids: string[] }> {
    const ops: LevelOp[] = [];
    const ids: string[] = [];
    for (const [key] of await this.#range(`S!${dev(addr)}!`, `S!${dev(addr)}!~`)) {
      const id = key.slice(key.lastIndexOf('!') + 1);
      ids.push(id);
      ops.push({ type: 'del', key }, { type: 'del', key: `s!${id}` });
    }
    return { ops, ids };
  }

  async putSession(session: SessionRecord, keep?: number): Promise<void> {
    const addr = { userId: session.userId, deviceId: session.deviceId };
    await this.#locks.run(`sess:${dev(addr)}`, async () => {
      const ops: LevelOp[] = [
        { type: 'put', key: `s!${session.id}`, value: session },
        { type: 'put', key: `S!${dev(addr)}!${session.id}`, value: 1 },
        { type: 'put', key: this.#expiryKey(session.expiresAt), value: { kind: 's', id: session.id, addr } satisfies ExpiryEntry },
      ];
      let ended: string[] = [];
      if (keep !== undefined) {
        const mine: SessionRecord[] = [session];
        for (const [key] of await this.#range(`S!${dev(addr)}!`, `S!${dev(addr)}!~`)) {
          const id = key.slice(key.lastIndexOf('!') + 1);
          const s = id === session.id ? undefined : (this.#sessions.get(id) ?? (await this.#get<SessionRecord>(`s!${id}`)));
          if (s) mine.push(s);
        }
        ended = sessionsBeyond(mine, keep).map((s) => s.id);
        for (const id of ended) ops.push({ type: 'del', key: `s!${id}` }, { type: 'del', key: `S!${dev(addr)}!${id}` });
      }
      await this.#writer.write(ops);
      this.#sessions.set(session.id, session);
      for (const id of ended) this.#sessions.delete(id);
    });
  }

  async getSession(id: string, now: number): Promise<SessionRecord | undefined> {
    let session = this.#sessions.get(id);
    if (!session) {
      session = await this.#get<SessionRecord>(`s!${id}`);
      if (session) this.#sessions.set(id, session);
    }
    return session && session.expiresAt > now ? session : undefined;
  }

  claimSessionNonce(id: string, nonce: string, expiresAt: number, now: number): Promise<'claimed' | 'replayed' | 'ended'> {
    return claimSessionNonceInProcess(this, id, nonce, expiresAt, now);
  }

  async putKeys(address: Address, keys: KeysUpload): Promise<void> {
    const d = dev(address);
    await this.#locks.run(`keys:${d}`, async () => {
      const { preKeys, kyberPreKeys, ...base } = keys;
      const prev = await this.#get<KeysUpload>(`K!${d}`);
      const same = prev !== undefined && prev.identityKey === base.identityKey && prev.registrationId === base.registrationId;
      const ops: LevelOp[] = [{ type: 'put', key: `K!${d}`, value: base }];
      const replace = async (prefix: string, list: Array<{ keyId: number }> | undefined) => {
        if (same && !list?.length) return;
        for (const [key] of await this.#range(`${prefix}!${d}!`, `${prefix}!${d}!~`)) ops.push({ type: 'del', key });
        for (const k of list ?? []) ops.push({ type: 'put', key: `${prefix}!${d}!${pad(k.keyId, 10)}`, value: k });
      };
      await replace('P', preKeys);
      await replace('Y', kyberPreKeys);
      await this.#writer.write(ops);
      this.#registrationsChange(address.userId);
    });
  }

  async keyCounts(address: Address): Promise<KeyCounts> {
    const d = dev(address);
    const count = async (prefix: string) => {
      try {
        return (await this.#db.keys({ gte: `${prefix}!${d}!`, lt: `${prefix}!${d}!~` }).all()).length;
      } catch (err) {
        throw levelError(err, 'read');
      }
    };
    return { preKeys: await count('P'), kyberPreKeys: await count('Y') };
  }

  async takeBundle(address: Address, options?: { oneTime?: boolean }): Promise<DeviceBundle | undefined> {
    const d = dev(address);
    const oneTime = options?.oneTime ?? true;
    const taken = await this.#locks.run(`keys:${d}`, async () => {
      const base = await this.#get<Omit<KeysUpload, 'preKeys' | 'kyberPreKeys'>>(`K!${d}`);
      if (!base) return undefined;
      // Keys popped by earlier calls may not be deleted on disk yet: skip them. A key leaves that set
      // only here, before the next read starts, once its deletion is written (an iterator opened
      // earlier could still see it).
      for (const key of this.#poppedWritten.splice(0)) this.#popped.delete(key);
      const first = async <T>(prefix: string) =>
        (await this.#range<T>(`${prefix}!${d}!`, `${prefix}!${d}!~`, this.#popped.size + 1)).find(([key]) => !this.#popped.has(key));
      const pre = oneTime ? await first<PreKeyUpload>('P') : undefined;
      const kyber = oneTime ? await first<KyberPreKeyUpload>('Y') : undefined;
      const ops: LevelOp[] = [];
      if (pre) ops.push({ type: 'del', key: pre[0] });
      if (kyber) ops.push({ type: 'del', key: kyber[0] });
      for (const op of ops) this.#popped.add(op.key);
      const bundle: DeviceBundle = {
        deviceId: address.deviceId,
        registrationId: base.registrationId,
        identityKey: base.identityKey,
        signedPreKey: base.signedPreKey,
        kyberPreKey: kyber ? kyber[1] : base.kyberLastResort,
        ...(pre ? { preKey: pre[1] } : {}),
      };
      // If the deletion fails the keys stay in `#popped`: never served again by this process.
      const written = this.#writer.write(ops).then(() => {
        for (const op of ops) this.#poppedWritten.push(op.key);
      });
      return { bundle, written };
    });
    if (!taken) return undefined;
    await taken.written;
    return taken.bundle;
  }

  async registrations(userId: string): Promise<Registration[]> {
    const cached = this.#registrations.get(userId);
    if (cached) return cached.map((r) => ({ ...r }));
    const changes = this.#registrationsChanged;
    const out: Registration[] = [];
    for (const d of await this.listDevices(userId)) {
      const keys = await this.#get<KeysUpload>(`K!${dev({ userId, deviceId: d.deviceId })}`);
      if (keys) out.push({ deviceId: d.deviceId, registrationId: keys.registrationId });
    }
    if (changes === this.#registrationsChanged) {
      if (this.#registrations.size >= 20_000) this.#registrations.clear();
      this.#registrations.set(userId, out.map((r) => ({ ...r })));
    }
    return out;
  }

  /** A device of the user, or its keys, changed (see #registrations). */
  #registrationsChange(userId: string): void {
    this.#registrationsChanged++;
    this.#registrations.delete(userId);
  }

  async registerPeer(address: Address, next: (prev: PeerRecord | undefined) => PeerRecord): Promise<PeerRecord> {
    const key = `g!${dev(address)}`;
    return this.#locks.run(key, async () => {
      const prev = await this.#get<PeerRecord>(key);
      const record = next(prev);
      await this.#writer.write([{ type: 'put', key, value: record }]);
      if (prev && prev.peerId !== record.peerId) this.#peerKeys.delete(prev.peerId);
      this.#peerKeys.set(record.peerId, key);
      return record;
    });
  }

  async heartbeatPeer(address: Address, now: number, ttlMs: number): Promise<PeerRecord | undefined> {
    const key = `g!${dev(address)}`;
    return this.#locks.run(key, async () => {
      const p = await this.#get<PeerRecord>(key);
      if (!p || p.expiresAt <= now) return undefined;
      const next = { ...p, expiresAt: now + ttlMs };
      await this.#writer.write([{ type: 'put', key, value: next }]);
      return next;
    });
  }

  async unregisterPeer(address: Address): Promise<boolean> {
    const key = `g!${dev(address)}`;
    return this.#locks.run(key, async () => {
      const p = await this.#get<PeerRecord>(key);
      if (p === undefined) return false;
      await this.#writer.write([{ type: 'del', key }]);
      this.#peerKeys.delete(p.peerId);
      return true;
    });
  }

  async listPeers(now: number): Promise<PeerRecord[]> {
    return (await this.#range<PeerRecord>('g!', 'g!~')).map(([, p]) => p).filter((p) => p.expiresAt > now);
  }

  async recordVerdict(peerId: string, now: number, apply: (peer: PeerRecord) => PeerRecord): Promise<PeerRecord | undefined> {
    const key = this.#peerKeys.get(peerId);
    if (!key) return undefined;
    return this.#locks.run(key, async () => {
      const p = await this.#get<PeerRecord>(key);
      if (!p || p.peerId !== peerId || p.expiresAt <= now) return undefined;
      const next = apply(p);
      await this.#writer.write([{ type: 'put', key, value: next }]);
      return next;
    });
  }

  async claimNonce(scope: string, nonce: string, expiresAt: number): Promise<boolean> {
    // The in-memory claim is synchronous, so two concurrent requests cannot both pass; LevelDB keeps
    // the claim across restarts within its window.
    // The records of earlier runs were loaded at open, so no request reads LevelDB here (a miss
    // would read every level-0 table, synchronously, on the event loop).
    if (!this.#recentNonces.claim(scope, nonce, expiresAt)) return false;
    // Not awaited: while this process lives the in-memory claim guards the nonce; the record only
    // has to outlive a restart, and it reaches the OS with the next batch, within milliseconds. The
    // claims of one turn of the event loop go out as one record (a record per request was a third
    // of the LevelDB operations at 2,000 messages a second).
    if (!this.#nonceBatch) {
      this.#nonceBatch = [];
      setImmediate(() => this.#writeNonces());
    }
    this.#nonceBatch.push([`${scope}:${nonce}`, expiresAt]);
    return true;
  }

  /**
   * Writes the nonces claimed since the last call as one record, `n!<minute>!<random>` holding
   * [scope:nonce, expiresAt] pairs, under the minute of the latest expiry among them: the sweep
   * drops it once all have expired. (Records of one nonce each, `n!<minute>!<scope>:<nonce>` →
   * expiresAt, were written before 2026-12 and still load.)
   */
  #writeNonces(): void {
    const batch = this.#nonceBatch;
    if (!batch) return;
    this.#nonceBatch = undefined;
    let latest = 0;
    for (const [, expiresAt] of batch) latest = Math.max(latest, expiresAt);
    const key = `n!${pad(Math.floor(latest / 60_000), 12)}!${randomUUID()}`;
    this.#writer.write([{ type: 'put', key, value: batch }]).catch(() => undefined);
  }

  async takeTokens(key: string, cost: number, policy: BucketPolicy, now: number): Promise<TakeResult> {
    return this.#buckets.take(key, cost, policy, now);
  }

  async #loadMeta(addr: Address): Promise<QueueMeta> {
    const k = dev(addr);
    return this.#meta.get(k) ?? this.#metaLoading.get(k) ?? this.#readMeta(k);
  }

  /**
   * A queue's counts, read from its messages on first use. One read per queue, shared by every
   * caller until it is done: two reads racing would each make their own meta, and one made from a
   * read taken before a send could replace the one that send counted in (the message unseen by
   * fetch, the limits wrong).
   */
  #readMeta(k: string): Promise<QueueMeta> {
    const loading: Promise<QueueMeta> = this.#countQueue(k).then(
      (meta) => {
        // Unless the queue was dropped meanwhile (a revocation): then its next use reads again.
        if (this.#metaLoading.get(k) !== loading) return meta;
        this.#metaLoading.delete(k);
        this.#meta.set(k, meta);
        // Only a speed-up: if this write fails, reads are slower, not wrong.
        this.#writer.write([{ type: 'put', key: `m!${k}${QUEUE_END}`, value: 0 }]).catch(() => undefined);
        return meta;
      },
      (err: unknown) => {
        if (this.#metaLoading.get(k) === loading) this.#metaLoading.delete(k);
        throw err;
      },
    );
    this.#metaLoading.set(k, loading);
    return loading;
  }

  async #countQueue(k: string): Promise<QueueMeta> {
    const meta: QueueMeta = { count: 0, bytes: 0, seq: 0, head: 0, senders: new Map(), kept: [] };
    for (const [key, m] of await this.#range<LevelMessage>(`m!${k}!`, `m!${k}!~`)) {
      countIn(meta, m.from.userId, 1, m.bytes);
      meta.seq = Number(key.slice(key.lastIndexOf('!') + 1));
      if (meta.count === 1) meta.head = meta.seq;
      this.#keep(meta, m);
    }
    return meta;
  }

  /** A message now written joins its queue's kept ones; too many, or the budget spent, and none are kept. */
  #keep(meta: QueueMeta, message: LevelMessage): void {
    const kept = meta.kept;
    if (!kept) return;
    if (kept.length >= KEPT_MESSAGES || this.#keptBytes + keptCost(message) > KEPT_BYTES) return this.#forget(meta);
    // Batches are written in seq order; only a failed one leaves a gap. Ids start with the padded
    // seq, so they sort as the seqs do.
    let i = kept.length;
    while (i > 0 && kept[i - 1]!.id > message.id) i--;
    kept.splice(i, 0, message);
    this.#keptBytes += keptCost(message);
  }

  /** The queue's messages are no longer kept (until it is empty again). */
  #forget(meta: QueueMeta): void {
    for (const m of meta.kept ?? []) this.#keptBytes -= keptCost(m);
    meta.kept = undefined;
  }

  /** Messages deleted (acked, expired) leave their queue's kept ones. */
  #unkeep(meta: QueueMeta, ids: ReadonlySet<string>): void {
    const kept = meta.kept;
    if (!kept || ids.size === 0) return;
    meta.kept = kept.filter((m) => {
      if (!ids.has(m.id)) return true;
      this.#keptBytes -= keptCost(m);
      return false;
    });
  }

  #expiryKey(expiresAt: number): string {
    this.#expirySeq = (this.#expirySeq + 1) % 1e9;
    return `x!${pad(expiresAt, 15)}!${this.#instance}${pad(this.#expirySeq, 9)}`;
  }

  async enqueue(recipients: readonly Recipient[], message: EnqueueInput, limits: QueueLimits, options?: EnqueueOptions): Promise<EnqueueResult> {
    const sizes = recipients.map((r) => base64Bytes(r.payload ?? message.payload));
    const sender = `${message.from.userId}:${message.from.deviceId}`;
    const dedupeKeys = recipients.map((r) => `k!${dev(r)}!${sender}!${message.clientId}`);
    // The device locks cover checks and the reservation in memory, and the write is submitted to the
    // group commit before they are released (so writes keep lock order); the fsync is awaited outside
    // them, so one device's sends share fsyncs instead of waiting for each other's.
    const outcome = await this.#locks.runAll(
      recipients.map((r) => `dev:${dev(r)}`),
      async () => {
        // Under the device locks, so a revocation cannot fall between the check and the write.
        const limited = checkBeforeEnqueue(this.#limits, recipients, options);
        if (limited) return { outcome: limited, written: undefined };
        // A key the filter has never seen was never written: no read (the common case).
        const seen = dedupeKeys.map((k) => this.#pendingDedupe.get(k) ?? (this.#dedupeFilter.has(k) ? this.#getNow<{ digest: string }>(k) : undefined));
        if (seen.some((s) => s && s.digest !== message.digest)) throw new LanternError('LA_ERR_MESSAGE_ID_CONFLICT');
        const seenCount = seen.filter((s) => s !== undefined).length;
        // A duplicate of a send still being written answers once that write is done.
        const duplicates = seenCount ? Promise.all(seen.map((s) => (s as { written?: Promise<void> } | undefined)?.written)) : undefined;
        const known = recipients.map((r) => this.#meta.get(dev(r)));
        const metas = known.every((m) => m !== undefined) ? known : await Promise.all(recipients.map((r) => this.#loadMeta(r)));
        const skipped: SkippedDevice[] = [];
        const take = recipients.map((r, i) => {
          if (seen[i] !== undefined) return false;
          const m = metas[i]!;
          const reason = this.#dormant(r, options?.dormantBefore) ? 'dormant' : skipReason(m, m.senders.get(message.from.userId) ?? NO_MESSAGES, sizes[i]!, limits);
          if (reason) skipped.push({ deviceId: r.deviceId, reason });
          return !reason;
        });
        const status = enqueueStatus(take.filter(Boolean).length, seenCount);
        const result = skipped.length ? { status, skipped } : { status };
        if (status !== 'queued') return { outcome: result, written: duplicates };
        const { ops, reserved } = this.#queueWrites(recipients, message, { take, metas, sizes, dedupeKeys });
        const written = this.#writer.write(ops).then(
          () => {
            for (const { meta, stored } of reserved) this.#keep(meta, stored);
          },
          (err: unknown) => {
            for (const { meta, bytes } of reserved) {
              countIn(meta, message.from.userId, -1, -bytes);
              this.#queued--;
            }
            throw err;
          },
        );
        const pending = { digest: message.digest, written };
        dedupeKeys.forEach((k, i) => {
          if (!take[i]) return;
          this.#pendingDedupe.set(k, pending);
          this.#dedupeFilter.add(k);
        });
        void written.then(
          () => dedupeKeys.forEach((k) => this.#pendingDedupe.get(k) === pending && this.#pendingDedupe.delete(k)),
          () => dedupeKeys.forEach((k) => this.#pendingDedupe.get(k) === pending && this.#pendingDedupe.delete(k)),
        );
        return { outcome: result, written: duplicates ? Promise.all([written, duplicates]) : written };
      },
    );
    await outcome.written;
    return outcome.outcome;
  }

  /**
   * The writes of one send (message, dedupe record, expiry entry per new recipient), with the queue
   * counts reserved in memory for them (given back if the write fails).
   */
  #queueWrites(
    recipients: readonly Recipient[],
    message: EnqueueInput,
    at: { take: readonly boolean[]; metas: QueueMeta[]; sizes: number[]; dedupeKeys: string[] },
  ): { ops: LevelOp[]; reserved: Reservation[] } {
    const { take, metas, sizes, dedupeKeys } = at;
    const ops: LevelOp[] = [];
    const reserved: Reservation[] = [];
    recipients.forEach((r, i) => {
      if (!take[i]) return;
      const m = metas[i]!;
      const seq = m.seq + 1;
      const seqText = pad(seq, 16);
      const id = `${seqText}-${randomUUID().slice(0, 8)}`;
      const stored: LevelMessage = {
        id,
        from: message.from,
        sentAt: message.sentAt,
        type: r.type ?? message.type,
        payload: r.payload ?? message.payload,
        expiresAt: message.expiresAt,
        bytes: sizes[i]!,
      };
      countIn(m, message.from.userId, 1, sizes[i]!);
      m.seq = seq;
      this.#queued++;
      const d = dev(r);
      this.#queues.add(d);
      reserved.push({ meta: m, bytes: sizes[i]!, stored });
      // The address alone: a recipient also carries its payload, which the entry must not repeat.
      const entry: ExpiryEntry = { kind: 'm', addr: { userId: r.userId, deviceId: r.deviceId }, seq, id, dedupe: dedupeKeys[i]! };
      ops.push(
        { type: 'put', key: `m!${d}!${seqText}`, value: stored },
        { type: 'put', key: dedupeKeys[i]!, value: { digest: message.digest, expiresAt: message.expiresAt } },
        { type: 'put', key: this.#expiryKey(message.expiresAt), value: entry },
      );
    });
    return { ops, reserved };
  }

  async fetch(address: Address, limit: number): Promise<{ messages: StoredMessage[]; more: boolean }> {
    const meta = await this.#loadMeta(address);
    // An empty queue needs no read (an idle device's, each time its poll's wait ends and it polls
    // again): the count covers every message stored or being written, and drops only once a
    // delete is written or the message has expired.
    if (meta.count === 0) return { messages: [], more: false };
    if (meta.kept) {
      const kept = meta.kept;
      if (kept.length) meta.head = Math.max(meta.head, Number(kept[0]!.id.slice(0, 16)));
      return { messages: kept.slice(0, limit).map(({ expiresAt: _e, bytes: _b, ...m }) => m), more: kept.length > limit };
    }
    const rows = await this.#range<LevelMessage>(`m!${dev(address)}!${pad(meta.head, 16)}`, `m!${dev(address)}!~`, limit + 1);
    // The oldest stored message: none below it can appear later (seqs are taken in order under the
    // device lock and written in that order), so later fetches may start there.
    const first = rows[0];
    if (first) meta.head = Math.max(meta.head, Number(first[0].slice(first[0].lastIndexOf('!') + 1)));
    const messages = rows.slice(0, limit).map(([, { expiresAt: _e, bytes: _b, ...m }]) => m);
    return { messages, more: rows.length > limit };
  }

  async ack(address: Address, ids: readonly string[]): Promise<number> {
    // Under the device lock the deletes are submitted to the group commit (so sends to the device
    // need not wait for this fsync); the counters change once the write has succeeded, so a failed
    // ack leaves the messages and the counts as they were. A message whose delete is on its way is
    // not counted twice by an ack that comes meanwhile.
    const outcome = await this.#locks.run(`dev:${dev(address)}`, async () => {
      const meta = await this.#loadMeta(address);
      const ops: LevelOp[] = [];
      const gone: LevelMessage[] = [];
      for (const id of new Set(ids)) {
        const seq = /^(\d{16})-[0-9a-f]{8}$/.exec(id)?.[1];
        if (!seq) continue;
        const key = `m!${dev(address)}!${seq}`;
        if (this.#acking.has(key)) continue;
        // A kept queue holds every written message: no read.
        const msg = meta.kept ? meta.kept.find((m) => m.id === id) : await this.#get<LevelMessage>(key);
        if (!msg || msg.id !== id) continue;
        ops.push({ type: 'del', key });
        gone.push(msg);
      }
      const keys = ops.map((op) => op.key);
      for (const key of keys) this.#acking.add(key);
      const written = this.#writer
        .write(ops)
        .then(() => {
          for (const msg of gone) countIn(meta, msg.from.userId, -1, -msg.bytes);
          this.#unkeep(meta, new Set(gone.map((m) => m.id)));
          this.#queued -= ops.length;
        })
        .finally(() => {
          for (const key of keys) this.#acking.delete(key);
        });
      return { acked: ops.length, written };
    });
    await outcome.written;
    return outcome.acked;
  }

  async queuedMessages(): Promise<number> {
    return this.#queued;
  }

  async recordPoll(address: Address, now: number): Promise<void> {
    this.#polled.set(dev(address), now);
    await this.#writer.write([{ type: 'put', key: `t!${dev(address)}`, value: now }]);
  }

  /** Whether the device is dormant (see EnqueueOptions.dormantBefore); false without a device record. */
  #dormant(address: Address, dormantBefore: number | undefined): boolean {
    if (dormantBefore === undefined) return false;
    const key = dev(address);
    const d = this.#deviceNow(address.userId, address.deviceId, key);
    if (!d) return false;
    let polled = this.#polled.get(key);
    if (polled === undefined) {
      polled = this.#getNow<number>(`t!${key}`) ?? null;
      this.#polled.set(key, polled);
    }
    return isDormant(polled ?? undefined, d.createdAt, dormantBefore);
  }

  /**
   * Deletes the messages of the queues whose device is dormant (ExpireOptions); drops emptied
   * queues from the sweep's list. Answers how many messages went.
   */
  async #expireDormant(dormantBefore: number): Promise<number> {
    let messages = 0;
    for (const k of [...this.#queues]) {
      const i = k.lastIndexOf('!');
      const addr = { userId: k.slice(0, i), deviceId: Number(k.slice(i + 1)) };
      const removed = await this.#locks.run(`dev:${k}`, async () => {
        const meta = await this.#loadMeta(addr);
        if (meta.count === 0) {
          this.#queues.delete(k);
          return undefined;
        }
        if (!this.#dormant(addr, dormantBefore)) return undefined;
        const rows = await this.#range<LevelMessage>(`m!${k}!${pad(meta.head, 16)}`, `m!${k}!~`);
        // Not those an ack is deleting already; the counts change once the deletes are written.
        const going = rows.filter(([key]) => !this.#acking.has(key));
        for (const [key] of going) this.#acking.add(key);
        const written = this.#writer
          .write(going.map(([key]) => ({ type: 'del' as const, key })))
          .then(() => {
            for (const [, msg] of going) countIn(meta, msg.from.userId, -1, -msg.bytes);
            this.#unkeep(meta, new Set(going.map(([, msg]) => msg.id)));
            this.#queued -= going.length;
            return going.length;
          })
          .finally(() => {
            for (const [key] of going) this.#acking.delete(key);
          });
        return { written };
      });
      messages += (await removed?.written) ?? 0;
    }
    return messages;
  }

  async queueStats(address: Address): Promise<QueueStats> {
    const m = await this.#loadMeta(address);
    return { count: m.count, bytes: m.bytes };
  }

  async expire(now: number, options?: ExpireOptions): Promise<ExpireResult> {
    let messages = options?.dormantBefore === undefined ? 0 : await this.#expireDormant(options.dormantBefore);
    const nowBucket = pad(Math.floor(now / 60_000), 12);
    this.#recentNonces.prune(now);
    try {
      await this.#db.clear({ gte: 'n!', lt: `n!${nowBucket}` });
    } catch (err) {
      throw levelError(err, 'expire nonces');
    }
    const end = `x!${pad(now + 1, 15)}`;
    for (;;) {
      const rows = await this.#range<ExpiryEntry>('x!', end, 1000);
      if (rows.length === 0) break;
      const ops: LevelOp[] = [];
      for (const [key, entry] of rows) {
        ops.push({ type: 'del', key });
        if (entry.kind === 's') {
          this.#sessions.delete(entry.id);
          ops.push({ type: 'del', key: `s!${entry.id}` }, { type: 'del', key: `S!${dev(entry.addr)}!${entry.id}` });
          continue;
        }
        ops.push({ type: 'del', key: entry.dedupe });
        const removed = await this.#locks.run(`dev:${dev(entry.addr)}`, async () => {
          const mkey = `m!${dev(entry.addr)}!${pad(entry.seq, 16)}`;
          const msg = await this.#get<LevelMessage>(mkey);
          // Acked already, or the seq was reused by a newer message after the queue emptied.
          if (!msg || msg.id !== entry.id) return undefined;
          const meta = await this.#loadMeta(entry.addr);
          countIn(meta, msg.from.userId, -1, -msg.bytes);
          this.#unkeep(meta, new Set([msg.id]));
          this.#queued--;
          return { written: this.#writer.write([{ type: 'del', key: mkey }]) };
        }).then(async (r) => {
          if (!r) return false;
          await r.written;
          return true;
        });
        if (removed) messages++;
      }
      await this.#writer.write(ops);
    }
    return { messages };
  }
}
