import { randomUUID } from 'node:crypto';
import { cred, type WithStore } from './helpers.js';

/** Sessions and nonces (SessionStore). */
export function sessionsCompliance(withStore: WithStore): void {
  withStore('sessions are found until they expire, and end when their device is revoked or renewed', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 1);
    await s.putDevice(u, cred(2), 1);
    const session = (id: string, deviceId: number, expiresAt = 10_000) => ({ id, userId: u, deviceId, key: 'a2V5', expiresAt });
    await s.putSession(session('s1', 1));
    await s.putSession(session('s2', 1, 500));
    await s.putSession(session('s3', 2));
    t.deepEqual(await s.getSession('s1', 100), session('s1', 1));
    t.is(await s.getSession('s2', 500), undefined, 'expired at its time');
    t.is(await s.getSession('nope', 100), undefined);
    await s.expire(600);
    t.is(await s.getSession('s2', 100), undefined, 'swept');
    await s.putDevice(u, cred(3), 700, 1);
    t.is(await s.getSession('s1', 800), undefined, 'renewing the credential ends its sessions');
    t.truthy(await s.getSession('s3', 800));
    await s.revokeDevice(u, 2, 900);
    t.is(await s.getSession('s3', 900), undefined, 'revoking the device ends its sessions');
  });

  withStore('a device keeps at most `keep` sessions: opening more ends those that expire first, of that device only', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 1);
    await s.putDevice(u, cred(2), 1);
    await s.putSession({ id: 'other', userId: u, deviceId: 2, key: 'a2V5', expiresAt: 5_000 });
    for (let i = 0; i < 10; i++) await s.putSession({ id: `s${i}`, userId: u, deviceId: 1, key: 'a2V5', expiresAt: 10_000 + i }, 8);
    const live = [];
    for (let i = 0; i < 10; i++) if (await s.getSession(`s${i}`, 100)) live.push(`s${i}`);
    t.deepEqual(live, ['s2', 's3', 's4', 's5', 's6', 's7', 's8', 's9']);
    t.truthy(await s.getSession('other', 100), "another device's session stays");
    t.is(await s.claimSessionNonce('s0', 'n1', 9_000, 100), 'ended', 'an ended session takes no request');
  });

  withStore('a nonce is accepted once until it expires, also under concurrency', async (t, s) => {
    const results = await Promise.all(Array.from({ length: 20 }, () => s.claimNonce('dev1', 'abc', 120_000)));
    t.is(results.filter(Boolean).length, 1);
    t.false(await s.claimNonce('dev1', 'abc', 120_000));
    await s.expire(119_000);
    t.false(await s.claimNonce('dev1', 'abc', 120_000), 'claimed again later, while it is live (a replay repeats the signed time, hence the expiry)');
    t.true(await s.claimNonce('dev1', 'other', 120_000));
    t.true(await s.claimNonce('dev2', 'abc', 120_000), 'nonces are per device');
    await s.expire(400_000);
    t.true(await s.claimNonce('dev1', 'abc', 500_000), 'an expired nonce is forgotten');
  });

  withStore('a session nonce is claimed once, and never once the session has ended', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 1);
    await s.putSession({ id: 's1', userId: u, deviceId: 1, key: 'a2V5', expiresAt: 10_000 });
    const results = await Promise.all(Array.from({ length: 10 }, () => s.claimSessionNonce('s1', 'n1', 120_000, 100)));
    t.deepEqual(results.filter((r) => r === 'claimed').length, 1);
    t.true(results.every((r) => r === 'claimed' || r === 'replayed'));
    t.is(await s.claimSessionNonce('s1', 'n2', 120_000, 100), 'claimed');
    t.is(await s.claimSessionNonce('s1', 'n3', 120_000, 10_000), 'ended', 'expired at its time');
    t.is(await s.claimSessionNonce('nope', 'n1', 120_000, 100), 'ended', 'an unknown session');
    await s.revokeDevice(u, 1, 200);
    t.is(await s.claimSessionNonce('s1', 'n4', 120_000, 300), 'ended', 'revoking the device ends it');
  });
}
