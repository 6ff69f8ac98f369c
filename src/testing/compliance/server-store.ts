import { randomUUID } from 'node:crypto';
import type { ExecutionContext, TestFn } from 'ava';
import type { KeysUpload } from '../../protocol/messages.js';
import type { DeviceCredential, EnqueueInput, ServerStore } from '../../storage/server-store.js';

export interface ServerStoreFactory {
  /** Returns a fresh, opened store. */
  setup(): Promise<ServerStore>;
  teardown(store: ServerStore): Promise<void>;
}

const cred = (n = 1): DeviceCredential => ({
  serial: `0${n}`.padStart(4, 'a'),
  publicKeyPem: `-----BEGIN PUBLIC KEY-----\n${n}\n-----END PUBLIC KEY-----`,
  expiresAt: 10_000_000,
});

const limits = { maxMessages: 100, maxBytes: 1_000_000 };
/** Two peer identity keys (raw Ed25519, base64url). */
const KEY_A = Buffer.alloc(32, 1).toString('base64url');
const KEY_B = Buffer.alloc(32, 2).toString('base64url');

function msg(over: Partial<EnqueueInput> = {}): EnqueueInput {
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

const b64 = (bytes: number, fill: number) => Buffer.alloc(bytes, fill).toString('base64');

/** Opaque key material of the right sizes (the store never parses it). */
function keys(over: Partial<KeysUpload> = {}, tag = 1): KeysUpload {
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

/** The behaviour every ServerStore backend must show. Each backend's test file runs this. */
export function serverStoreComplianceTests(test: TestFn, name: string, factory: ServerStoreFactory): void {
  const withStore = (title: string, fn: (t: ExecutionContext, s: ServerStore) => Promise<void>) =>
    test(`${name}: ${title}`, async (t) => {
      const store = await factory.setup();
      try {
        await fn(t, store);
      } finally {
        await factory.teardown(store);
      }
    });

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

  withStore('a nonce is accepted once until it expires, also under concurrency', async (t, s) => {
    const results = await Promise.all(Array.from({ length: 20 }, () => s.claimNonce('dev1', 'abc', 120_000)));
    t.is(results.filter(Boolean).length, 1);
    t.false(await s.claimNonce('dev1', 'abc', 120_000));
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

  withStore('a send takes its rate limits first; when one is short nothing is stored', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    const pair = { key: 'pair:x>y', cost: 1, policy: { capacity: 2, refillPerSecond: 1 } };
    const bytes = (cost: number) => ({ key: `bytes:${to.userId}`, cost, policy: { capacity: 10, refillPerSecond: 5 } });
    const opts = (cost: number, now = 1000) => ({ now, buckets: [pair, bytes(cost)] });
    t.is((await s.enqueue([to], msg(), limits, opts(5))).status, 'queued');
    t.deepEqual(await s.enqueue([to], msg(), limits, opts(6)), { status: 'limited', bucket: 1, retryAfterMs: 200 }, 'the second bucket is short by 1 token');
    t.deepEqual(await s.enqueue([to], msg(), limits, opts(1)), { status: 'limited', bucket: 0, retryAfterMs: 1000 }, 'the pair token of the refused send stays taken');
    t.is((await s.fetch(to, 10)).messages.length, 1, 'nothing stored for the refused sends');
    t.is((await s.enqueue([to], msg(), limits, opts(1, 2000))).status, 'queued', 'refilled');
    t.is((await s.fetch(to, 10)).messages.length, 2);
  });

  withStore('a send only to active devices refuses an absent or revoked one and stores nothing', async (t, s) => {
    const u = randomUUID();
    await s.putDevice(u, cred(1), 1);
    await s.putDevice(u, cred(2), 1);
    const [one, two, three] = [1, 2, 3].map((deviceId) => ({ userId: u, deviceId }));
    const active = { now: 1000, activeDevicesOnly: true };
    t.is((await s.enqueue([one!, two!], msg(), limits, active)).status, 'queued');
    await t.throwsAsync(s.enqueue([one!, three!], msg(), limits, active), { code: 'LA_ERR_RECIPIENT_NOT_FOUND' } as never);
    await s.revokeDevice(u, 2, 5);
    await t.throwsAsync(s.enqueue([one!, two!], msg(), limits, active), { code: 'LA_ERR_RECIPIENT_NOT_FOUND' } as never);
    t.is((await s.fetch(one!, 10)).messages.length, 1, 'nothing stored for the refused sends');
  });

  withStore('token buckets refuse when empty and say when to retry', async (t, s) => {
    const policy = { capacity: 3, refillPerSecond: 1 };
    for (let i = 0; i < 3; i++) t.deepEqual(await s.takeTokens('k', 1, policy, 1000), { ok: true });
    const refused = await s.takeTokens('k', 1, policy, 1000);
    t.false(refused.ok);
    t.is(refused.ok ? 0 : refused.retryAfterMs, 1000);
    t.deepEqual(await s.takeTokens('k', 1, policy, 2000), { ok: true }, 'refilled after a second');
    t.deepEqual(await s.takeTokens('other', 3, policy, 2000), { ok: true }, 'buckets are per key');
    const tooBig = await s.takeTokens('big', 4, policy, 2000);
    t.false(tooBig.ok);
  });

  withStore('messages come back in send order, in batches, until acked', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    const sender = { userId: randomUUID(), deviceId: 2 };
    for (let i = 0; i < 5; i++) {
      await s.enqueue([to], msg({ from: sender, payload: Buffer.from(`m${i}`).toString('base64'), sentAt: i }), limits);
    }
    const first = await s.fetch(to, 3);
    t.true(first.more);
    t.deepEqual(first.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['m0', 'm1', 'm2']);
    t.deepEqual(first.messages[0]!.from, sender);
    t.is(new Set(first.messages.map((m) => m.id)).size, 3);
    t.is(await s.ack(to, [first.messages[0]!.id, first.messages[2]!.id, 'unknown']), 2);
    t.is(await s.ack(to, [first.messages[0]!.id]), 0, 'acking twice deletes nothing more');
    const rest = await s.fetch(to, 10);
    t.false(rest.more);
    t.deepEqual(rest.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['m1', 'm3', 'm4']);
    t.deepEqual(await s.queueStats(to), { count: 3, bytes: 6 });
    const other = { userId: to.userId, deviceId: 2 };
    t.deepEqual((await s.fetch(other, 10)).messages, [], 'queues are per device');
    t.is(await s.ack(other, [rest.messages[0]!.id]), 0, 'another device cannot ack this queue');
  });

  withStore('a resent client id is a duplicate; with other content a conflict', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    const m = msg();
    t.deepEqual(await s.enqueue([to], m, limits), { status: 'queued' });
    t.deepEqual(await s.enqueue([to], m, limits), { status: 'duplicate' });
    await t.throwsAsync(s.enqueue([to], { ...m, digest: 'other' }, limits), { code: 'LA_ERR_MESSAGE_ID_CONFLICT' } as never);
    const sameIdOtherSender = { ...m, from: { userId: randomUUID(), deviceId: 1 } };
    t.deepEqual(await s.enqueue([to], sameIdOtherSender, limits), { status: 'queued' }, 'ids are per sender');
    t.is((await s.fetch(to, 10)).messages.length, 2);
    const [first] = (await s.fetch(to, 10)).messages;
    await s.ack(to, [first!.id]);
    t.deepEqual(await s.enqueue([to], m, limits), { status: 'duplicate' }, 'still a duplicate after the ack');
  });

  withStore('a full queue refuses the whole send and keeps what it holds', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const b = { userId: a.userId, deviceId: 2 };
    const small = { maxMessages: 2, maxBytes: 1000 };
    await s.enqueue([a], msg(), small);
    await s.enqueue([a], msg(), small);
    await t.throwsAsync(s.enqueue([a, b], msg(), small), { code: 'LA_ERR_QUEUE_FULL' } as never);
    t.is((await s.fetch(b, 10)).messages.length, 0, 'nothing stored for the other device either');
    t.is((await s.fetch(a, 10)).messages.length, 2, 'held messages are never dropped');
    const big = Buffer.alloc(600).toString('base64');
    await s.enqueue([b], msg({ payload: big }), small);
    await t.throwsAsync(s.enqueue([b], msg({ payload: big }), small), { code: 'LA_ERR_QUEUE_FULL' } as never);
    t.deepEqual(await s.queueStats(b), { count: 1, bytes: 600 });
  });

  withStore('concurrent sends to one queue are all stored and counted', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await Promise.all(Array.from({ length: 200 }, (_, i) => s.enqueue([to], msg({ sentAt: i }), { maxMessages: 1000, maxBytes: 1e6 })));
    const got = await s.fetch(to, 500);
    t.is(got.messages.length, 200);
    t.deepEqual(await s.queueStats(to), { count: 200, bytes: 1000 });
    const full = { maxMessages: 210, maxBytes: 1e6 };
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => s.enqueue([to], msg(), full)));
    t.is(results.filter((r) => r.status === 'fulfilled').length, 10, 'the cap holds under concurrency');
  });

  withStore('undelivered messages expire; fresh ones stay', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.enqueue([to], msg({ expiresAt: 5000 }), limits);
    await s.enqueue([to], msg({ expiresAt: 9000, payload: Buffer.from('late').toString('base64') }), limits);
    t.deepEqual(await s.expire(4999), { messages: 0 });
    t.deepEqual(await s.expire(5000), { messages: 1 });
    const left = await s.fetch(to, 10);
    t.deepEqual(left.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['late']);
    t.deepEqual(await s.queueStats(to), { count: 1, bytes: 4 });
    await s.ack(to, [left.messages[0]!.id]);
    t.deepEqual(await s.expire(10_000), { messages: 0 }, 'acked messages are not counted again');
    t.deepEqual(await s.queueStats(to), { count: 0, bytes: 0 });
  });

  withStore('1,000 concurrent bundle fetches never serve a one-time key twice', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.putDevice(to.userId, cred(1), 1);
    await s.putKeys(to, keys());
    t.deepEqual(await s.keyCounts(to), { preKeys: 100, kyberPreKeys: 100 });
    const bundles = await Promise.all(Array.from({ length: 1000 }, () => s.takeBundle(to)));
    const ec = bundles.flatMap((b) => (b?.preKey ? [b.preKey.keyId] : []));
    const kyber = bundles.map((b) => b!.kyberPreKey.keyId);
    t.is(ec.length, 100, 'every one-time EC key served once, then none');
    t.is(new Set(ec).size, 100);
    const oneTimeKyber = kyber.filter((id) => id !== 9999);
    t.is(oneTimeKyber.length, 100);
    t.is(new Set(oneTimeKyber).size, 100, 'no one-time Kyber key twice');
    t.is(kyber.filter((id) => id === 9999).length, 900, 'then the last-resort Kyber key');
    t.deepEqual(await s.keyCounts(to), { preKeys: 0, kyberPreKeys: 0 });
    const empty = await s.takeBundle(to);
    t.is(empty!.preKey, undefined, 'a bundle without a one-time EC key is still a bundle');
    t.is(empty!.signedPreKey.keyId, 1);
    t.is(await s.takeBundle({ ...to, deviceId: 2 }), undefined, 'no keys, no bundle');
  });

  withStore('key uploads replace signed keys and non-empty one-time lists; re-registration drops old ones', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.putDevice(to.userId, cred(1), 1);
    await s.putDevice(to.userId, cred(2), 1);
    await s.putKeys(to, keys());
    await s.putKeys(to, keys({ signedPreKey: { keyId: 2, publicKey: b64(33, 7), signature: b64(64, 8) }, preKeys: [], kyberPreKeys: undefined }));
    t.deepEqual(await s.keyCounts(to), { preKeys: 100, kyberPreKeys: 100 }, 'empty lists keep the stored ones');
    t.is((await s.takeBundle(to))!.signedPreKey.keyId, 2, 'the new signed key replaced the old one');
    await s.putKeys(to, keys({ preKeys: [{ keyId: 500, publicKey: b64(33, 9) }], kyberPreKeys: [] }));
    t.deepEqual(await s.keyCounts(to), { preKeys: 1, kyberPreKeys: 99 }, 'a non-empty list replaces the whole list');
    t.is((await s.takeBundle(to))!.preKey!.keyId, 500);
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1001 }], 'only devices with keys count');
    await s.putKeys(to, keys({ preKeys: undefined, kyberPreKeys: undefined }, 2));
    t.deepEqual(await s.keyCounts(to), { preKeys: 0, kyberPreKeys: 0 }, 'a new identity drops the old one-time keys');
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1002 }]);
    await s.putKeys({ userId: to.userId, deviceId: 2 }, keys({}, 3));
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1002 }, { deviceId: 2, registrationId: 1003 }], 'by device id');
    await s.revokeDevice(to.userId, 1, 2);
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 2, registrationId: 1003 }], 'a revoked device does not count');
    t.is(await s.takeBundle(to), undefined, 'revoking a device deletes its keys');
    await s.putDevice(to.userId, cred(5), 3);
    await s.registerPeer({ userId: to.userId, deviceId: 2, host: '203.0.113.9', port: 1, protocols: ['connect'], identityKey: KEY_A }, 3, 1000);
    await s.revokeDevice(to.userId, 2, 4);
    t.deepEqual(await s.listPeers(5), [], 'and its peer registration');
    t.deepEqual(await s.registrations(to.userId), []);
  });

  withStore('per-recipient payloads are stored for their own device', async (t, s) => {
    const u = randomUUID();
    const m = msg({ payload: '' });
    await s.enqueue(
      [
        { userId: u, deviceId: 1, type: 3, payload: Buffer.from('for one').toString('base64') },
        { userId: u, deviceId: 2, type: 2, payload: Buffer.from('for two!').toString('base64') },
      ],
      m,
      limits,
    );
    const one = (await s.fetch({ userId: u, deviceId: 1 }, 10)).messages[0]!;
    const two = (await s.fetch({ userId: u, deviceId: 2 }, 10)).messages[0]!;
    t.deepEqual([one.type, Buffer.from(one.payload, 'base64').toString()], [3, 'for one']);
    t.deepEqual([two.type, Buffer.from(two.payload, 'base64').toString()], [2, 'for two!']);
    t.deepEqual(await s.queueStats({ userId: u, deviceId: 2 }), { count: 1, bytes: 8 });
  });

  withStore('give peers register once per device, heartbeat, expire and unregister', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const first = await s.registerPeer({ ...a, host: '203.0.113.5', port: 8443, protocols: ['connect', 'socks5'], identityKey: KEY_A }, 1000, 30_000);
    t.is(first.state, 'candidate');
    t.is(first.expiresAt, 31_000);
    const again = await s.registerPeer({ ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A, publicAddrHint: 'proxy.example:443' }, 2000, 30_000);
    t.is(again.peerId, first.peerId, 'a re-registration keeps the peer id');
    t.is(again.registeredAt, 1000);
    t.is(again.publicAddrHint, 'proxy.example:443');
    t.deepEqual((await s.listPeers(2000)).map((p) => p.peerId), [first.peerId]);
    t.is((await s.heartbeatPeer(a, 20_000, 30_000))?.expiresAt, 50_000);
    t.deepEqual(await s.listPeers(50_000), [], 'expired registrations are not listed');
    t.is(await s.heartbeatPeer(a, 50_000, 30_000), undefined, 'an expired registration must register again');
    const b = { userId: randomUUID(), deviceId: 2 };
    await s.registerPeer({ ...b, host: '198.51.100.7', port: 1080, protocols: ['socks5'], identityKey: KEY_B }, 60_000, 30_000);
    t.true(await s.unregisterPeer(b));
    t.false(await s.unregisterPeer(b));
    t.deepEqual(await s.listPeers(60_000), []);
  });

  withStore('verdicts admit, evict on one failure, pause after failing long, and registering again resumes', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const peer = await s.registerPeer({ ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 0, 3_600_000);
    const v = (ok: boolean, at: number) => ({ ok, status: ok ? 'ok' : 'refused', at });
    const pause = 600_000;
    t.is((await s.recordVerdict(peer.peerId, v(true, 1000), 1000, pause))?.state, 'verified');
    t.is((await s.recordVerdict(peer.peerId, v(true, 1000), 1000, pause))?.state, 'verified', 'the same verdict twice changes nothing');
    const failed = await s.recordVerdict(peer.peerId, v(false, 2000), 2000, pause);
    t.is(failed?.state, 'candidate', 'one failure takes it out of the round robin');
    t.is(failed?.failingSince, 2000);
    t.like(failed?.lastVerdict, { ok: false, status: 'refused' });
    t.is((await s.recordVerdict(peer.peerId, v(true, 3000), 3000, pause))?.state, 'verified', 're-admitted on the next pass');
    await s.recordVerdict(peer.peerId, v(false, 10_000), 10_000, pause);
    t.is((await s.recordVerdict(peer.peerId, v(false, 10_000 + pause - 1), 10_000, pause))?.state, 'candidate');
    t.is((await s.recordVerdict(peer.peerId, v(false, 10_000 + pause), 10_000, pause))?.state, 'paused', 'failing for the pause time pauses it');
    t.is((await s.recordVerdict(peer.peerId, v(true, 700_000), 700_000, pause))?.state, 'paused', 'a paused peer stays paused');
    const again = await s.registerPeer({ ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 800_000, 3_600_000);
    t.is(again.state, 'candidate', 'until it registers again');
    t.is(again.peerId, peer.peerId);
    t.is(await s.recordVerdict(randomUUID(), v(true, 1), 1, pause), undefined);
    // A re-registration at the same address keeps a verified peer verified; at another it must pass again.
    await s.recordVerdict(peer.peerId, v(true, 900_000), 900_000, pause);
    t.is((await s.registerPeer({ ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 900_001, 3_600_000)).state, 'verified');
    t.is((await s.registerPeer({ ...a, host: '203.0.113.6', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 900_002, 3_600_000)).state, 'candidate');
    await s.recordVerdict(peer.peerId, v(true, 900_003), 900_003, pause);
    const rekeyed = await s.registerPeer({ ...a, host: '203.0.113.6', port: 8443, protocols: ['connect'], identityKey: KEY_B }, 900_004, 3_600_000);
    t.is(rekeyed.state, 'candidate', 'a new identity key at the same address must pass again');
    t.is(rekeyed.identityKey, KEY_B);
  });

  withStore('queuedMessages counts what waits in every queue', async (t, s) => {
    const u = randomUUID();
    const [one, two] = [{ userId: u, deviceId: 1 }, { userId: u, deviceId: 2 }];
    await s.putDevice(u, cred(1), 1);
    await s.putDevice(u, cred(2), 1);
    const before = await s.queuedMessages();
    const m = msg();
    await s.enqueue([one, two], m, limits);
    await s.enqueue([one, two], m, limits);
    t.is(await s.queuedMessages(), before + 2, 'one per recipient device; a duplicate adds nothing');
    await s.enqueue([one], msg({ expiresAt: 5 }), limits);
    t.is(await s.queuedMessages(), before + 3);
    const [first] = (await s.fetch(one, 1)).messages;
    await s.ack(one, [first!.id]);
    t.is(await s.queuedMessages(), before + 2);
    await s.expire(10);
    t.is(await s.queuedMessages(), before + 1, 'expired messages leave the count');
    await s.revokeDevice(u, 2, 11);
    t.is(await s.queuedMessages(), before);
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
