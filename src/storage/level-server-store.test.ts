import { randomUUID } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { Level } from 'level';
import { serverStoreComplianceTests } from '../testing/compliance/server-store.js';
import { cred, keys, msg } from '../testing/compliance/server-store/helpers.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import { LevelServerStore } from './level-server-store.js';
import type { ServerStore } from './server-store.js';

const dirs = new WeakMap<ServerStore, () => Promise<void>>();

serverStoreComplianceTests(test, 'LevelServerStore', {
  async setup() {
    const dir = await tempDir();
    const store = new LevelServerStore({ location: dir.path, sync: false });
    await store.open();
    dirs.set(store, dir.remove);
    return store;
  },
  async teardown(store) {
    await store.close();
    await dirs.get(store)?.();
  },
  async faulty() {
    const dir = await tempDir();
    let failing = false;
    const store = new LevelServerStore({
      location: dir.path,
      sync: false,
      injectWriteFault: () => {
        if (failing) throw Object.assign(new Error('No space left on device'), { code: 'ENOSPC' });
      },
    });
    await store.open();
    dirs.set(store, dir.remove);
    return {
      store,
      failWrites: (on: boolean) => void (failing = on),
      reopen: async () => {
        await store.close();
        const again = new LevelServerStore({ location: dir.path, sync: false });
        await again.open();
        dirs.set(again, dir.remove);
        return again;
      },
    };
  },
});

/** A store on a fresh directory that counts its range reads of keys starting with `prefix`. */
async function storeCountingRanges(t: ExecutionContext, prefix: string): Promise<{ store: LevelServerStore; ranges: () => number }> {
  const dir = await tempDir();
  t.teardown(dir.remove);
  let count = 0;
  const store = new LevelServerStore({
    location: dir.path,
    sync: false,
    injectReadDelay: (gte) => {
      if (gte.startsWith(prefix)) count++;
      return undefined;
    },
  });
  await store.open();
  t.teardown(() => store.close());
  return { store, ranges: () => count };
}

test('LevelServerStore: queued messages, meta and dedupe survive a reopen', async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const to = { userId: randomUUID(), deviceId: 3 };
  const input = msg({ digest: 'x', type: 1, payload: Buffer.from('persist').toString('base64'), sentAt: 1, expiresAt: 10_000 });
  const first = new LevelServerStore({ location: dir.path });
  await first.open();
  await first.enqueue([to], input, { maxMessages: 10, maxBytes: 1000 });
  await first.close();
  const second = new LevelServerStore({ location: dir.path });
  await second.open();
  t.teardown(() => second.close());
  const { messages } = await second.fetch(to, 10);
  t.is(Buffer.from(messages[0]!.payload, 'base64').toString(), 'persist');
  t.deepEqual(await second.queueStats(to), { count: 1, bytes: 7 });
  t.is(await second.queuedMessages(), 1, 'the total is counted again at open');
  t.deepEqual(await second.enqueue([to], input, { maxMessages: 10, maxBytes: 1000 }), { status: 'duplicate' });
});

test("LevelServerStore: each sender's share, last polls and dormant queues are known again after a reopen", async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const u = randomUUID();
  const [one, two] = [{ userId: u, deviceId: 1 }, { userId: u, deviceId: 2 }];
  const flooder = { userId: randomUUID(), deviceId: 1 };
  const share = { maxMessages: 10, maxBytes: 1000, perSender: { maxMessages: 2, maxBytes: 1000 } };
  const first = new LevelServerStore({ location: dir.path });
  await first.open();
  await first.putDevice(u, cred(1), 1000);
  await first.putDevice(u, cred(2), 1000);
  for (let i = 0; i < 2; i++) await first.enqueue([one, two], msg({ from: flooder, expiresAt: 1e9 }), share);
  await first.recordPoll(one, 5000);
  await first.close();
  const second = new LevelServerStore({ location: dir.path });
  await second.open();
  t.teardown(() => second.close());
  t.is((await second.enqueue([one], msg({ from: flooder, expiresAt: 1e9 }), share)).status, 'skipped', 'the share is counted from what is stored');
  t.deepEqual(await second.expire(6000, { dormantBefore: 4000 }), { messages: 2 }, 'only the device that never polled is dormant');
  t.deepEqual([(await second.queueStats(one)).count, (await second.queueStats(two)).count], [2, 0]);
  t.is(await second.queuedMessages(), 2);
});

test('LevelServerStore: a second process-level open of the same directory is LA_ERR_STORE_LOCKED', async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const a = new LevelServerStore({ location: dir.path });
  await a.open();
  t.teardown(() => a.close());
  const b = new LevelServerStore({ location: dir.path });
  await t.throwsAsync(b.open(), { code: 'LA_ERR_STORE_LOCKED' } as never);
});

test('LevelServerStore: a nonce claimed before a restart is still a replay after it, until it expires', async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const first = new LevelServerStore({ location: dir.path });
  await first.open();
  t.true(await first.claimNonce('user:1', 'n-one', 120_000));
  t.true(await first.claimNonce('s:session', 'n-two', 130_000));
  await first.close();
  // The claims of one turn of the event loop are one record; a record of the older kind (one
  // nonce each) still counts.
  const raw = new Level<string, unknown>(dir.path, { valueEncoding: 'json' });
  t.is((await raw.keys({ gte: 'n!', lt: 'n!~' }).all()).length, 1, 'one record for both claims');
  await raw.put('n!000000000002!user:9:n-old', 150_000);
  await raw.close();
  const second = new LevelServerStore({ location: dir.path });
  await second.open();
  t.teardown(() => second.close());
  t.false(await second.claimNonce('user:1', 'n-one', 120_000), 'a device nonce');
  t.false(await second.claimNonce('s:session', 'n-two', 130_000), 'a session nonce');
  t.false(await second.claimNonce('user:9', 'n-old', 150_000), 'a nonce recorded the older way');
  t.true(await second.claimNonce('user:2', 'n-one', 120_000), 'another device may use the same value');
  await second.expire(200_000);
  t.true(await second.claimNonce('user:1', 'n-one', 120_000), 'forgotten once expired');
});

test("LevelServerStore: a queue's first read, taken before a send to it and answered after: the message is fetched and counted once", async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  let slow = true;
  const store = new LevelServerStore({
    location: dir.path,
    sync: false,
    // Only the first read of a queue (the poll's first look at it) comes back late.
    injectReadDelay: (gte) => {
      if (!slow || !gte.startsWith('m!')) return undefined;
      slow = false;
      return new Promise((r) => setTimeout(r, 100));
    },
  });
  await store.open();
  t.teardown(() => store.close());
  const to = { userId: randomUUID(), deviceId: 1 };
  const firstLook = store.fetch(to, 10);
  t.deepEqual(await store.enqueue([to], msg({ payload: Buffer.from('late').toString('base64') }), { maxMessages: 10, maxBytes: 1000 }), { status: 'queued' });
  await firstLook;
  const { messages } = await store.fetch(to, 10);
  t.deepEqual(messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['late'], 'the send is not hidden by the late read');
  t.deepEqual(await store.queueStats(to), { count: 1, bytes: 4 });
  await store.ack(to, [messages[0]!.id]);
  t.deepEqual(await store.queueStats(to), { count: 0, bytes: 0 });
});

test('LevelServerStore: a short queue is answered from memory (no range read per poll); a long one from disk, in order, and from memory again once emptied', async (t) => {
  const { store, ranges } = await storeCountingRanges(t, 'm!');
  const to = { userId: randomUUID(), deviceId: 1 };
  const text = (i: number) => Buffer.from(`m${i}`).toString('base64');
  const roomy = { maxMessages: 1000, maxBytes: 100_000 };
  const drain = async (batch: number) => {
    const got: string[] = [];
    for (let i = 0; i < 100; i++) {
      const { messages } = await store.fetch(to, batch);
      if (messages.length === 0) break;
      got.push(...messages.map((m) => Buffer.from(m.payload, 'base64').toString()));
      t.is(await store.ack(to, messages.map((m) => m.id)), messages.length);
    }
    return got;
  };
  for (let i = 0; i < 5; i++) await store.enqueue([to], msg({ payload: text(i) }), roomy);
  const first = ranges();
  t.deepEqual(await drain(2), ['m0', 'm1', 'm2', 'm3', 'm4']);
  t.is(ranges(), first, 'a short queue: fetches and acks without a range read');

  // Past what is kept (64 messages): from disk, every message once and in order.
  for (let i = 0; i < 150; i++) await store.enqueue([to], msg({ payload: text(i) }), roomy);
  t.deepEqual(await drain(40), Array.from({ length: 150 }, (_, i) => `m${i}`));
  t.true(ranges() > first, 'a long queue is read from disk');
  t.deepEqual(await store.queueStats(to), { count: 0, bytes: 0 });

  // Emptied: kept whole again.
  const before = ranges();
  for (let i = 0; i < 3; i++) await store.enqueue([to], msg({ payload: text(i) }), roomy);
  t.deepEqual(await drain(10), ['m0', 'm1', 'm2']);
  t.is(ranges(), before, 'answered from memory again');
});

test('LevelServerStore: what a queue kept in memory answers is what is on disk, after a reopen too', async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const to = { userId: randomUUID(), deviceId: 1 };
  const sender = { userId: randomUUID(), deviceId: 4 };
  const roomy = { maxMessages: 1000, maxBytes: 100_000 };
  const store = new LevelServerStore({ location: dir.path, sync: false });
  await store.open();
  for (let i = 0; i < 4; i++) await store.enqueue([to], msg({ from: sender, type: i, sentAt: 100 + i, payload: Buffer.from(`p${i}`).toString('base64') }), roomy);
  const fromMemory = await store.fetch(to, 10);
  await store.ack(to, [fromMemory.messages[1]!.id]);
  const afterAck = await store.fetch(to, 10);
  await store.close();
  const again = new LevelServerStore({ location: dir.path, sync: false });
  await again.open();
  t.teardown(() => again.close());
  const fromDisk = await again.fetch(to, 10);
  t.deepEqual(fromDisk, afterAck, 'the same messages, fields and order from memory as from disk');
  t.deepEqual(fromDisk.messages.map((m) => m.type), [0, 2, 3]);
  t.deepEqual(fromDisk.messages[0]!.from, sender);
});

test('LevelServerStore: a message payload is written once (the expiry entry holds the address, not the recipient with its payload)', async (t) => {
  const dir = await tempDir();
  t.teardown(dir.remove);
  const store = new LevelServerStore({ location: dir.path, sync: false });
  await store.open();
  const payload = Buffer.alloc(48 * 1024, 7).toString('base64');
  const to = { userId: randomUUID(), deviceId: 2, type: 1, payload };
  t.is((await store.enqueue([to], msg({ payload: '' }), { maxMessages: 10, maxBytes: 1 << 20 })).status, 'queued');
  await store.close();
  const raw = new Level<string, string>(dir.path, { valueEncoding: 'utf8' });
  t.teardown(() => raw.close());
  const withPayload: string[] = [];
  for await (const [key, value] of raw.iterator()) if (value.includes(payload)) withPayload.push(key.slice(0, 2));
  t.deepEqual(withPayload, ['m!']);
});

test("LevelServerStore: a user's registrations are read once, and are new right after a device or its keys change", async (t) => {
  const { store, ranges } = await storeCountingRanges(t, 'd!');
  const userId = randomUUID();
  const one = await store.putDevice(userId, cred(), 1);
  await store.putKeys({ userId, deviceId: one.deviceId }, keys({}, 1));
  const before = ranges();
  t.deepEqual(await store.registrations(userId), [{ deviceId: one.deviceId, registrationId: 1001 }]);
  t.deepEqual(await store.registrations(userId), [{ deviceId: one.deviceId, registrationId: 1001 }]);
  t.is(ranges() - before, 1, 'the second send to the user reads nothing');

  await store.putKeys({ userId, deviceId: one.deviceId }, keys({}, 2));
  t.deepEqual(await store.registrations(userId), [{ deviceId: one.deviceId, registrationId: 1002 }], 'new keys');
  const two = await store.putDevice(userId, cred(), 2);
  await store.putKeys({ userId, deviceId: two.deviceId }, keys({}, 3));
  t.deepEqual(
    (await store.registrations(userId)).map((r) => r.deviceId),
    [one.deviceId, two.deviceId],
    'a new device with keys',
  );
  await store.revokeDevice(userId, one.deviceId, 3);
  t.deepEqual(await store.registrations(userId), [{ deviceId: two.deviceId, registrationId: 1003 }], 'a revoked device is gone');
});
