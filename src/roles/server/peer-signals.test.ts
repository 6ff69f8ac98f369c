import { setImmediate as tick } from 'node:timers/promises';
import test from 'ava';
import { silentLogger } from '../../core/logger.js';
import { MemoryNotifier } from '../../storage/memory-notifier.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { PeerSignals, VERDICT_CHANNEL } from './peer-signals.js';

const settle = async () => {
  for (let i = 0; i < 10; i++) await tick();
};

test("a give peer waiting for its verdict is woken by its own peer's signal only, and at once by one already there", async (t) => {
  const clock = new FakeClock();
  const signals = new PeerSignals({ notifier: new MemoryNotifier(), clock, logger: silentLogger() }, VERDICT_CHANNEL);
  await signals.start();
  const abort = new AbortController();
  let woke = false;
  const waiting = signals.until('peer-a', clock.now(), 30_000, abort.signal).then(() => (woke = true));
  for (let i = 0; i < 100; i++) await signals.signal(`other-${i}`);
  await settle();
  t.false(woke, "a hundred other peers' verdicts do not wake it");
  await signals.signal('peer-a');
  await waiting;
  t.true(woke);

  const since = clock.now();
  await signals.signal('peer-b');
  await settle();
  const started = clock.now();
  await signals.until('peer-b', since, 30_000, abort.signal);
  t.is(clock.now(), started, 'a signal after `since` that came before the wait answers at once');

  let timedOut = false;
  const unanswered = signals.until('peer-c', clock.now(), 30_000, abort.signal).then(() => (timedOut = true));
  clock.advance(29_999);
  await settle();
  t.false(timedOut);
  clock.advance(1);
  await unanswered;
  t.true(timedOut, 'and after the wait with nothing');
  await signals.stop();
});
