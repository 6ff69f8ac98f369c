import { randomUUID } from 'node:crypto';
import { cred, limits, msg, type WithStore } from './helpers.js';

/** Accounts and devices (AccountStore). */
export function accountsCompliance(withStore: WithStore): void {
  withStore('accounts are created once and found by name and by user id', async (t, s) => {
    const userId = randomUUID();
    const account = { name: 'alice', userId, role: 'user' as const, passwordHash: 'h', createdAt: 1 };
    await s.createAccount(account);
    t.deepEqual(await s.getAccount('alice'), account);
    t.deepEqual(await s.getAccountByUserId(userId), account);
    t.is(await s.getAccount('bob'), undefined);
    await t.throwsAsync(s.createAccount({ ...account, userId: randomUUID() }), { code: 'LA_ERR_ACCOUNT_EXISTS' } as never);
    t.is((await s.getAccount('alice'))?.userId, userId, 'the first account is kept');
    t.true(await s.disableAccount('alice', 7));
    t.is((await s.getAccount('alice'))?.disabledAt, 7);
    t.false(await s.disableAccount('nobody', 7));
  });

  withStore('devices get the lowest free id, revoked ids are reused, 127 at most', async (t, s) => {
    const u = randomUUID();
    t.is((await s.putDevice(u, cred(1), 10)).deviceId, 1);
    t.is((await s.putDevice(u, cred(2), 11)).deviceId, 2);
    t.true(await s.revokeDevice(u, 1, 12));
    t.false(await s.revokeDevice(u, 1, 13), 'revoking twice reports nothing to revoke');
    t.is((await s.getDevice(u, 1))?.revokedAt, 12);
    t.deepEqual((await s.listDevices(u)).map((d) => d.deviceId), [2]);
    t.is((await s.putDevice(u, cred(3), 14)).deviceId, 1);
    for (let i = 3; i <= 127; i++) await s.putDevice(u, cred(i), 15);
    t.is((await s.listDevices(u)).length, 127);
    await t.throwsAsync(s.putDevice(u, cred(200), 16), { code: 'LA_ERR_DEVICE_LIMIT' } as never);
  });

  withStore('a device credential can be renewed in place', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 10);
    const renewed = await s.putDevice(u, { ...cred(9), serial: 'beef' }, 20, 1);
    t.is(renewed.deviceId, 1);
    t.is(renewed.createdAt, 10);
    t.is((await s.getDevice(u, 1))?.serial, 'beef');
    await t.throwsAsync(s.putDevice(u, cred(2), 21, 5), { code: 'LA_ERR_DEVICE_NOT_FOUND' } as never);
  });

  withStore('revoking a device deletes its queue', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 1);
    const to = { userId: u, deviceId: 1 };
    const m = msg();
    await s.enqueue([to], m, limits);
    t.true(await s.revokeDevice(u, 1, 2));
    t.deepEqual((await s.fetch(to, 10)).messages, []);
    t.deepEqual(await s.queueStats(to), { count: 0, bytes: 0 });
    t.deepEqual(await s.enqueue([to], m, limits), { status: 'queued' }, 'dedupe records went with the queue');
  });
}
