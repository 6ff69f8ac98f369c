import { setImmediate as tick } from 'node:timers/promises';
import test from 'ava';
import { silentLogger } from '../../core/logger.js';
import type { PeerInfo } from '../../protocol/messages.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { createVerify } from './index.js';
import type { VerifyApi } from './verifier.js';

const settle = async () => {
  for (let i = 0; i < 20; i++) await tick();
};

const options = { server: { host: '127.0.0.1', port: 1, tls: false }, concurrency: 2, timeoutMs: 1000, maxLatencyMs: 1000, minMbps: 0, intervalMs: 15_000 };

/** A server with no peers whose listing (one per pass) answers when the test says. */
function slowServer() {
  const pending: Array<(peers: PeerInfo[]) => void> = [];
  const api = { peers: () => new Promise<PeerInfo[]>((resolve) => pending.push(resolve)) } as unknown as VerifyApi;
  return { api, pending, answer: () => pending.shift()!([]) };
}

test('passes start an interval apart, from the start of the last; a pass longer than that is followed at once', async (t) => {
  const clock = new FakeClock();
  const server = slowServer();
  const verify = createVerify({ api: server.api, clock, logger: silentLogger(), jitter: () => 0.5 }, options);
  await verify.start();
  t.is(verify.passes, 1);
  clock.advance(4000);
  server.answer(); // the first pass took 4 s
  await settle();
  clock.advance(10_999);
  await settle();
  t.is(verify.passes, 1, 'not before 15 s from the start of the first');
  clock.advance(1);
  await settle();
  t.is(verify.passes, 2);
  clock.advance(40_000); // the second pass takes 40 s
  server.answer();
  await settle();
  t.is(verify.passes, 3, 'the third starts as soon as the second ends');
  const stopping = verify.stop();
  server.answer();
  await stopping;
  t.is(verify.passes, 3, 'no pass after stop');
  t.is(clock.pendingTimers, 0);
});

test('a failed pass is logged and the next comes on time', async (t) => {
  const clock = new FakeClock();
  let calls = 0;
  const api = {
    peers: async () => {
      calls++;
      throw new Error('server away');
    },
  } as unknown as VerifyApi;
  const verify = createVerify({ api, clock, logger: silentLogger(), jitter: () => 0.5 }, options);
  await verify.start();
  await settle();
  clock.advance(15_000);
  await settle();
  t.is(calls, 2);
  await verify.stop();
});

test('passes come within 20 % of the interval either way, at random', async (t) => {
  for (const [jitter, due] of [
    [0, 12_000],
    [0.999, 17_994],
  ] as const) {
    const clock = new FakeClock();
    const server = slowServer();
    const verify = createVerify({ api: server.api, clock, logger: silentLogger(), jitter: () => jitter }, options);
    await verify.start();
    server.answer();
    await settle();
    clock.advance(due - 1);
    await settle();
    t.is(verify.passes, 1, `not before ${due} ms`);
    clock.advance(1);
    await settle();
    t.is(verify.passes, 2, `at ${due} ms`);
    void verify.stop();
    server.answer();
  }
});
