import { randomUUID } from 'node:crypto';
import test from 'ava';
import { silentLogger } from '../../core/logger.js';
import type { PollResponse } from '../../protocol/messages.js';
import { MemoryNotifier } from '../../storage/memory-notifier.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import { FakeClock } from '../../testing/fake-clock.js';
import type { AuthContext } from './authenticator.js';
import { Mailbox } from './mailbox.js';
import { defaultServerOptions } from './options.js';

async function setup() {
  const store = new MemoryServerStore();
  await store.open();
  const clock = new FakeClock();
  const mailbox = new Mailbox({ store, notifier: new MemoryNotifier(), clock, logger: silentLogger() }, defaultServerOptions);
  const bob = randomUUID();
  await store.putDevice(bob, { serial: 'aa', publicKeyPem: 'k', expiresAt: clock.now() + 1e9 }, clock.now());
  const alice: AuthContext = { userId: randomUUID(), deviceId: 1, certificateExpires: 0, scheme: 'LA1S' };
  const outcomes: Array<PollResponse | undefined> = [];
  const respond = (batch: PollResponse | undefined) => outcomes.push(batch);
  const send = (text: string) =>
    mailbox.send(alice, { id: randomUUID(), to: bob, type: 0, payload: Buffer.from(text).toString('base64') });
  return { store, clock, mailbox, bob: { userId: bob, deviceId: 1 }, outcomes, respond, send };
}

const flush = () => new Promise((r) => setImmediate(r));

test('a held poll ends with nothing at its deadline (fake clock)', async (t) => {
  const { clock, mailbox, bob, outcomes, respond } = await setup();
  await mailbox.poll(bob, 30, 10, respond);
  t.is(mailbox.heldPolls, 1);
  clock.advance(29_999);
  t.deepEqual(outcomes, []);
  clock.advance(1);
  t.deepEqual(outcomes, [undefined]);
  t.is(mailbox.heldPolls, 0);
});

test('a send wakes the held poll with the message', async (t) => {
  const { mailbox, bob, outcomes, respond, send, clock } = await setup();
  await mailbox.poll(bob, 30, 10, respond);
  await send('wake up');
  await flush();
  t.is(outcomes.length, 1);
  t.is(Buffer.from(outcomes[0]!.messages[0]!.payload, 'base64').toString(), 'wake up');
  t.is(clock.pendingTimers, 0, 'the deadline timer is cleared');
});

test('queued messages answer at once; wait 0 with nothing answers at once too', async (t) => {
  const { mailbox, bob, outcomes, respond, send } = await setup();
  await mailbox.poll(bob, 0, 10, respond);
  t.deepEqual(outcomes, [undefined]);
  await send('waiting');
  await mailbox.poll(bob, 30, 10, respond);
  t.is(outcomes[1]!.messages.length, 1);
  t.is(mailbox.heldPolls, 0);
});

test('a newer poll of the same device releases the older one; a cancelled poll is never answered', async (t) => {
  const { mailbox, bob, outcomes, respond, send } = await setup();
  await mailbox.poll(bob, 30, 10, respond);
  const newer: Array<PollResponse | undefined> = [];
  const second = await mailbox.poll(bob, 30, 10, (b) => newer.push(b));
  t.deepEqual(outcomes, [undefined], 'the older poll got its 204');
  second.cancel();
  await send('after cancel');
  await flush();
  t.deepEqual(newer, [], 'a cancelled poll is not answered');
  t.is(mailbox.heldPolls, 0);
});

test('shutdown answers every held poll and refuses new ones', async (t) => {
  const { mailbox, bob, outcomes, respond } = await setup();
  await mailbox.poll(bob, 30, 10, respond);
  await mailbox.poll({ ...bob, deviceId: 2 }, 30, 10, respond);
  mailbox.releaseAll();
  t.deepEqual(outcomes, [undefined, undefined]);
  await t.throwsAsync(mailbox.poll(bob, 30, 10, respond), { code: 'LA_ERR_SHUTTING_DOWN' } as never);
});

test('sends are rate limited per sender->recipient with a retry time', async (t) => {
  const store = new MemoryServerStore();
  await store.open();
  const clock = new FakeClock();
  const options = { ...defaultServerOptions, rate: { ...defaultServerOptions.rate, pair: { capacity: 2, refillPerSecond: 1 } } };
  const mailbox = new Mailbox({ store, notifier: new MemoryNotifier(), clock, logger: silentLogger() }, options);
  const bob = randomUUID();
  await store.putDevice(bob, { serial: 'aa', publicKeyPem: 'k', expiresAt: clock.now() + 1e9 }, clock.now());
  const alice: AuthContext = { userId: randomUUID(), deviceId: 1, certificateExpires: 0, scheme: 'LA1S' };
  const send = () => mailbox.send(alice, { id: randomUUID(), to: bob, type: 0, payload: 'eA==' });
  await send();
  await send();
  const err = await t.throwsAsync(send(), { code: 'LA_ERR_RATE_LIMITED' } as never);
  t.is((err as unknown as { details: { retryAfterMs: number } }).details.retryAfterMs, 1000);
  clock.advance(1000);
  await t.notThrowsAsync(send());
});
