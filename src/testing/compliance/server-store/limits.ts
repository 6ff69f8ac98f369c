import { randomUUID } from 'node:crypto';
import { limits, msg, type WithStore } from './helpers.js';

/** Rate limits (LimitStore), and the checks a send takes first. */
export function limitsCompliance(withStore: WithStore): void {
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
}
