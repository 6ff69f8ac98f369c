import type { TestFn } from 'ava';
import { randomUUID } from 'node:crypto';
import { cred, limits, msg, type ServerStoreFactory } from './helpers.js';

/** Failed writes: nothing changes, in memory or on disk. */
export function faultsCompliance(test: TestFn, name: string, factory: ServerStoreFactory): void {
  if (factory.faulty) {
    const faulty = factory.faulty;
    test(`${name}: a write that fails changes nothing, in memory or on disk (acks, revocations, renewals, sends)`, async (t) => {
      const { store, failWrites, reopen } = await faulty();
      let s = store;
      try {
        const to = { userId: randomUUID(), deviceId: 1 };
        await s.putDevice(to.userId, cred(1), 1);
        for (let i = 0; i < 3; i++) await s.enqueue([to], msg(), limits);
        const queued = (await s.fetch(to, 10)).messages;
        const session = { id: randomUUID(), userId: to.userId, deviceId: 1, key: 'k', expiresAt: 9_000_000 };
        await s.putSession(session);
        const before = { stats: await s.queueStats(to), total: await s.queuedMessages() };

        failWrites(true);
        const storeError = (err: unknown) => typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('LA_ERR_STORE');
        t.true(storeError(await t.throwsAsync(s.ack(to, queued.slice(0, 2).map((m) => m.id)))), 'a failed ack is a store error');
        t.true(storeError(await t.throwsAsync(s.revokeDevice(to.userId, 1, 5))), 'a failed revocation is a store error');
        t.true(storeError(await t.throwsAsync(s.putDevice(to.userId, cred(2), 6, 1))), 'a failed renewal is a store error');
        t.true(storeError(await t.throwsAsync(s.enqueue([to], msg(), limits))), 'a failed send is a store error');
        failWrites(false);

        t.deepEqual(await s.queueStats(to), before.stats, 'the queue counts are as before');
        t.is(await s.queuedMessages(), before.total);
        t.is((await s.fetch(to, 10)).messages.length, 3, 'no message was lost');
        t.is((await s.getDevice(to.userId, 1))?.revokedAt, undefined, 'the device is still active');
        t.is((await s.getDevice(to.userId, 1))?.serial, cred(1).serial, 'with its old credential');
        t.truthy(await s.getSession(session.id, 10), 'its session still holds');

        t.is(await s.ack(to, [queued[0]!.id]), 1, 'once writes work again, so does an ack');
        const live = { stats: await s.queueStats(to), total: await s.queuedMessages() };
        s = await reopen();
        t.deepEqual({ stats: await s.queueStats(to), total: await s.queuedMessages() }, live, 'what was counted in memory is what is on disk');
        t.deepEqual((await s.fetch(to, 10)).messages.map((m) => m.id), queued.slice(1).map((m) => m.id));
      } finally {
        failWrites(false);
        await factory.teardown(s);
      }
    });
  }
}
