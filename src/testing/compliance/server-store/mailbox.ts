import { randomUUID } from 'node:crypto';
import { cred, limits, msg, type WithStore } from './helpers.js';

/** Device queues (MailboxStore). */
export function mailboxCompliance(withStore: WithStore): void {
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

  withStore('a full queue is skipped: the other devices get theirs, and it keeps what it holds', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const b = { userId: a.userId, deviceId: 2 };
    const small = { maxMessages: 2, maxBytes: 1000 };
    await s.enqueue([a], msg(), small);
    await s.enqueue([a], msg(), small);
    const m = msg();
    t.deepEqual(await s.enqueue([a, b], m, small), { status: 'queued', skipped: [{ deviceId: 1, reason: 'full' }] });
    t.is((await s.fetch(b, 10)).messages.length, 1, 'the other device got it');
    t.is((await s.fetch(a, 10)).messages.length, 2, 'held messages are never dropped');
    t.deepEqual(await s.enqueue([a, b], m, small), { status: 'duplicate', skipped: [{ deviceId: 1, reason: 'full' }] }, 'a resend stores nothing twice');
    const big = Buffer.alloc(996).toString('base64');
    t.deepEqual(await s.enqueue([b], msg({ payload: big }), small), { status: 'skipped', skipped: [{ deviceId: 2, reason: 'full' }] }, 'the bytes count too');
    t.deepEqual(await s.queueStats(b), { count: 1, bytes: 5 });
    const [first] = (await s.fetch(a, 1)).messages;
    await s.ack(a, [first!.id]);
    t.deepEqual(await s.enqueue([a, b], m, small), { status: 'queued' }, 'once there is room, a resend reaches the device it missed');
    t.is((await s.fetch(b, 10)).messages.length, 1, 'and not the one it reached');
  });

  withStore('one sender holds at most its share of a queue; others still get through', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    const flooder = randomUUID();
    const share = { maxMessages: 8, maxBytes: 1000, perSender: { maxMessages: 2, maxBytes: 12 } };
    const from = (deviceId: number, userId = flooder) => ({ userId, deviceId });
    t.is((await s.enqueue([to], msg({ from: from(1) }), share)).status, 'queued');
    t.is((await s.enqueue([to], msg({ from: from(2) }), share)).status, 'queued');
    t.deepEqual(await s.enqueue([to], msg({ from: from(3) }), share), { status: 'skipped', skipped: [{ deviceId: 1, reason: 'share' }] }, 'counted per user, all its devices together');
    const honest = randomUUID();
    t.is((await s.enqueue([to], msg({ from: from(1, honest) }), share)).status, 'queued');
    const big = Buffer.alloc(9).toString('base64');
    t.deepEqual(await s.enqueue([to], msg({ from: from(1, honest), payload: big }), share), { status: 'skipped', skipped: [{ deviceId: 1, reason: 'share' }] }, 'bytes count too');
    const mine = (await s.fetch(to, 10)).messages.filter((m) => m.from.userId === flooder);
    await s.ack(to, [mine[0]!.id]);
    t.is((await s.enqueue([to], msg({ from: from(1) }), share)).status, 'queued', 'a delivered message frees its place');
    t.deepEqual(await s.queueStats(to), { count: 3, bytes: 15 });
  });

  withStore('a dormant device is skipped, and its messages expire first', async (t, s) => {
    const u = randomUUID();
    const [one, two] = [{ userId: u, deviceId: 1 }, { userId: u, deviceId: 2 }];
    await s.putDevice(u, cred(1), 1000);
    await s.putDevice(u, cred(2), 1000);
    await s.enqueue([one, two], msg({ expiresAt: 1e9 }), limits, { now: 2000, dormantBefore: 500 });
    await s.recordPoll(one, 5000);
    const options = { now: 6000, dormantBefore: 4000 };
    t.deepEqual(await s.enqueue([one, two], msg({ expiresAt: 1e9 }), limits, options), { status: 'queued', skipped: [{ deviceId: 2, reason: 'dormant' }] }, 'never polled since its creation at 1000');
    t.deepEqual(await s.enqueue([two], msg({ expiresAt: 1e9 }), limits, options), { status: 'skipped', skipped: [{ deviceId: 2, reason: 'dormant' }] });
    t.deepEqual(await s.expire(6000), { messages: 0 }, 'nothing due by its own expiry');
    t.deepEqual(await s.expire(6000, { dormantBefore: 4000 }), { messages: 1 }, "the dormant device's message goes");
    t.is((await s.fetch(one, 10)).messages.length, 2, 'the active device keeps its own');
    t.deepEqual(await s.queueStats(two), { count: 0, bytes: 0 });
    await s.recordPoll(two, 7000);
    t.is((await s.enqueue([two], msg({ expiresAt: 1e9 }), limits, options)).status, 'queued', 'a poll wakes it');
    t.deepEqual(await s.expire(7000, { dormantBefore: 4000 }), { messages: 0 });
  });

  withStore('concurrent sends to one queue are all stored and counted', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await Promise.all(Array.from({ length: 200 }, (_, i) => s.enqueue([to], msg({ sentAt: i }), { maxMessages: 1000, maxBytes: 1e6 })));
    const got = await s.fetch(to, 500);
    t.is(got.messages.length, 200);
    t.deepEqual(await s.queueStats(to), { count: 200, bytes: 1000 });
    const full = { maxMessages: 210, maxBytes: 1e6 };
    const results = await Promise.all(Array.from({ length: 20 }, () => s.enqueue([to], msg(), full)));
    t.is(results.filter((r) => r.status === 'queued').length, 10, 'the cap holds under concurrency');
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
}
