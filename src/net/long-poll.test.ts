import { setImmediate as tick } from 'node:timers/promises';
import test from 'ava';
import { LanternError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import type { PollResponse } from '../protocol/messages.js';
import { FakeClock } from '../testing/fake-clock.js';
import { longPoll } from './long-poll.js';
import { Backoff, retry } from './retry.js';

const batch = (...ids: string[]): PollResponse => ({ messages: ids.map((id) => ({ id, from: { userId: 'u', deviceId: 1 }, sentAt: 0, type: 0, payload: '' })), more: false }) as PollResponse;

/** A scripted server: each poll takes the next answer (a batch, undefined for 204, or an error). */
function scripted(answers: Array<PollResponse | undefined | Error>) {
  const polls: string[][] = [];
  const acked: string[][] = [];
  const waiting: Array<() => void> = [];
  return {
    polls,
    acked,
    poll: async (acks: string[], signal: AbortSignal) => {
      polls.push(acks);
      const next = answers.shift();
      if (next === undefined && answers.length === 0) {
        // Nothing scripted: held until the loop is stopped.
        await new Promise<void>((resolve) => {
          waiting.push(resolve);
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
        throw new Error('aborted');
      }
      if (next instanceof Error) throw next;
      return next;
    },
    ack: async (ids: string[]) => void acked.push(ids),
  };
}

const settle = async () => {
  for (let i = 0; i < 20; i++) await tick();
};

test('a stored batch is acked with the next poll; what is held when the loop stops is acked on its own', async (t) => {
  const clock = new FakeClock();
  const server = scripted([batch('a', 'b'), undefined, batch('c')]);
  const stored: string[] = [];
  const abort = new AbortController();
  const done = longPoll({ clock, logger: silentLogger(), signal: abort.signal, poll: server.poll, ack: server.ack, follow: true, handle: async (b) => void stored.push(...b.messages.map((m) => m.id)) });
  await settle();
  t.deepEqual(server.polls, [[], ['a', 'b'], [], ['c']]);
  abort.abort();
  await done;
  t.deepEqual(stored, ['a', 'b', 'c']);
  // The poll held at the stop carried ['c'] and was cut short: they are acked again, on their own.
  t.deepEqual(server.acked, [['c']]);
});

test('a batch that could not be stored is not acked, and comes again', async (t) => {
  const clock = new FakeClock();
  const server = scripted([batch('a'), batch('a')]);
  let fail = true;
  const abort = new AbortController();
  const done = longPoll({
    clock,
    logger: silentLogger(),
    signal: abort.signal,
    poll: server.poll,
    ack: server.ack,
    follow: true,
    handle: async () => {
      if (fail) {
        fail = false;
        throw new LanternError('LA_ERR_INTERNAL', 'disk full');
      }
    },
  });
  await settle();
  t.deepEqual(server.polls, [[]], 'after the failure the loop waits before polling again');
  clock.advance(1000);
  await settle();
  t.deepEqual(server.polls, [[], [], ['a']]);
  abort.abort();
  await done;
});

test('a failed poll keeps its acks and waits the backoff on the clock, longer each time, shorter again after a success', async (t) => {
  const clock = new FakeClock();
  const down = () => new LanternError('LA_ERR_SERVER_UNREACHABLE');
  const server = scripted([batch('a'), down(), down(), undefined, down()]);
  const abort = new AbortController();
  const done = longPoll({ clock, logger: silentLogger(), signal: abort.signal, poll: server.poll, ack: server.ack, follow: true, handle: async () => undefined, policy: { initialMs: 500, maxMs: 30_000, factor: 2 } });
  await settle();
  t.deepEqual(server.polls, [[], ['a']]);
  clock.advance(499);
  await settle();
  t.is(server.polls.length, 2, 'not before 500 ms');
  clock.advance(1);
  await settle();
  t.deepEqual(server.polls.at(-1), ['a'], 'the acks are carried again');
  clock.advance(999);
  await settle();
  t.is(server.polls.length, 3, 'the second wait is 1 s');
  clock.advance(1);
  await settle();
  // That poll succeeded (204), then the next one failed: back to 500 ms.
  t.is(server.polls.length, 5);
  clock.advance(500);
  await settle();
  t.is(server.polls.length, 6);
  abort.abort();
  await done;
});

test('an error that is not retryable ends the loop with it, after acking what was stored', async (t) => {
  const clock = new FakeClock();
  const server = scripted([batch('a'), new LanternError('LA_ERR_AUTH_REVOKED')]);
  const error = await t.throwsAsync(
    longPoll({ clock, logger: silentLogger(), signal: new AbortController().signal, poll: server.poll, ack: server.ack, follow: true, handle: async () => undefined, retryable: (err) => LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE') }),
  );
  t.true(LanternError.is(error, 'LA_ERR_AUTH_REVOKED'));
  t.deepEqual(server.acked, [['a']], 'the failed poll may not have delivered its acks: sent again, on their own');
  t.deepEqual(server.polls, [[], ['a']]);
});

test('without follow: one poll, and its batch acked at once', async (t) => {
  const clock = new FakeClock();
  const server = scripted([batch('a', 'b'), batch('c')]);
  await longPoll({ clock, logger: silentLogger(), signal: new AbortController().signal, poll: server.poll, ack: server.ack, follow: false, handle: async () => undefined });
  t.deepEqual(server.polls, [[]]);
  t.deepEqual(server.acked, [['a', 'b']]);
});

test('retry: waits between attempts, gives up after the last or on an error that is not retryable', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const failing = retry(
    async () => {
      calls++;
      throw new LanternError('LA_ERR_SERVER_UNREACHABLE');
    },
    { clock, attempts: 3, policy: { initialMs: 250, maxMs: 1000, factor: 2 }, retryable: () => true },
  );
  failing.catch(() => undefined);
  await settle();
  t.is(calls, 1);
  clock.advance(250);
  await settle();
  t.is(calls, 2);
  clock.advance(500);
  await settle();
  t.is(calls, 3);
  await t.throwsAsync(failing, { code: 'LA_ERR_SERVER_UNREACHABLE' });
  calls = 0;
  await t.throwsAsync(
    retry(
      async () => {
        calls++;
        throw new LanternError('LA_ERR_USAGE');
      },
      { clock, attempts: 3, policy: { initialMs: 250, maxMs: 1000, factor: 2 }, retryable: (err) => LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE') },
    ),
    { code: 'LA_ERR_USAGE' },
  );
  t.is(calls, 1);
});

test('backoff: grows by its factor to its cap, spread by its jitter, and starts over after reset', (t) => {
  const b = new Backoff({ initialMs: 100, maxMs: 350, factor: 2 });
  t.deepEqual([b.next(), b.next(), b.next(), b.next()], [100, 200, 350, 350]);
  b.reset();
  t.is(b.next(), 100);
  const low = new Backoff({ initialMs: 1000, maxMs: 1000, factor: 1, jitter: 0.2 }, () => 0);
  const high = new Backoff({ initialMs: 1000, maxMs: 1000, factor: 1, jitter: 0.2 }, () => 1);
  t.is(low.next(), 800);
  t.is(high.next(), 1200);
});
