// The server's store-and-forward path without HTTP: the Mailbox over a LevelDB store (fsynced group
// commit, as the server runs it) in this process, driven as the signaling benchmark's durable phase
// drives the server (BENCH_SENDERS senders each with 50 sends in flight, 20 receivers polling and
// acking), for plain sends (one device named) and for end-to-end encrypted ones (a ciphertext per
// registered device, checked against the registration ids). What it prints, messages per second and
// the event loop's CPU per message, is the store's and the mailbox's own cost: far less noisy on
// this VM than the signaling benchmark, whose client shares the two cores.
import { randomUUID } from 'node:crypto';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import type { SendRequest } from '../../src/protocol/messages.js';
import type { AuthContext } from '../../src/roles/server/authenticator.js';
import { Mailbox } from '../../src/roles/server/mailbox.js';
import { defaultServerOptions } from '../../src/roles/server/options.js';
import { LevelServerStore } from '../../src/storage/level-server-store.js';
import { MemoryNotifier } from '../../src/storage/memory-notifier.js';
import { tempDir } from '../../src/testing/helpers/temp-dir.js';
import { cpuSecondsByThread } from './proc.js';
import { batchesOf50, drained, percentile } from './delivery.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const SECONDS = env('BENCH_SECONDS', 5);
const ROUNDS = env('BENCH_ROUNDS', 3);
const SENDERS = env('BENCH_SENDERS', 4);
const RECEIVERS = 20;
const REGISTRATION_ID = 1001;

const b64 = (n: number) => Buffer.alloc(n, 1).toString('base64');
/** A device's keys record as a client uploads it (the sizes matter: it is read to check a send). */
const keys = () => ({
  identityKey: b64(33),
  registrationId: REGISTRATION_ID,
  signedPreKey: { keyId: 1, publicKey: b64(33), signature: b64(64) },
  kyberLastResort: { keyId: 9999, publicKey: b64(1569), signature: b64(64) },
});

const stamp = () => Buffer.from(String(performance.now())).toString('base64');
const shapes: Record<string, (to: string) => SendRequest> = {
  plain: (to) => ({ id: randomUUID(), to, deviceId: 1, type: 0, payload: stamp() }),
  'end-to-end': (to) => ({ id: randomUUID(), to, messages: [{ deviceId: 1, registrationId: REGISTRATION_ID, type: 1, payload: stamp() }] }),
};

export async function run(): Promise<void> {
  const dir = await tempDir('lantern-bench-mailbox-');
  const store = new LevelServerStore({ location: `${dir.path}/store`, sync: true });
  await store.open();
  const unlimited = { capacity: 1e12, refillPerSecond: 1e12 };
  const options = {
    ...defaultServerOptions,
    rate: { ...defaultServerOptions.rate, pair: unlimited, recipientBytes: unlimited },
    queue: { ...defaultServerOptions.queue, maxMessages: 1_000_000 },
  };
  const mailbox = new Mailbox({ store, notifier: new MemoryNotifier(), clock: systemClock, logger: silentLogger() }, options);
  const receivers: string[] = [];
  for (let i = 0; i < RECEIVERS; i++) {
    const userId = randomUUID();
    await store.putDevice(userId, { serial: 'aa', publicKeyPem: 'unused', expiresAt: Date.now() + 86_400_000 }, Date.now());
    await store.putKeys({ userId, deviceId: 1 }, keys());
    receivers.push(userId);
  }
  const senders: AuthContext[] = Array.from({ length: SENDERS }, () => ({ userId: randomUUID(), deviceId: 1, certificateExpires: Date.now() + 86_400_000, scheme: 'LA1S' }));

  let received = 0;
  let polls = 0;
  let running = true;
  const receiving = receivers.map(async (userId) => {
    const device = { userId, deviceId: 1 };
    let pending: string[] = [];
    while (running) {
      if (pending.length) await mailbox.ack(device, pending);
      const batch = await new Promise<{ messages: Array<{ id: string }> } | undefined>((resolve) => void mailbox.poll(device, 1, 500, (b) => resolve(b)));
      pending = batch ? batch.messages.map((m) => m.id) : [];
      received += pending.length;
      polls++;
    }
  });

  const phase = async (shape: (to: string) => SendRequest, seconds: number) => {
    received = 0;
    polls = 0;
    const cpu = cpuSecondsByThread(process.pid).main;
    const start = performance.now();
    const sent = await batchesOf50(senders, seconds, async (sender, base) => {
      await Promise.all(Array.from({ length: 50 }, (_, j) => mailbox.send(sender, shape(receivers[(base + j) % RECEIVERS]!))));
    });
    await drained(() => received, sent);
    const elapsed = (performance.now() - start) / 1000;
    return { perSecond: received / elapsed, cpuUs: ((cpuSecondsByThread(process.pid).main - cpu) * 1e6) / Math.max(1, received), perPoll: received / Math.max(1, polls) };
  };

  console.log(`mailbox benchmark: LevelDB store (fsynced group commit) in this process, ${SENDERS} senders x 50 sends in flight, ${RECEIVERS} receivers polling and acking; ${ROUNDS} rounds of ${SECONDS} s per shape, alternating`);
  for (const shape of Object.values(shapes)) await phase(shape, 1); // warm-up
  const results: Record<string, Array<Awaited<ReturnType<typeof phase>>>> = {};
  for (let r = 0; r < ROUNDS; r++) for (const [name, shape] of Object.entries(shapes)) (results[name] ??= []).push(await phase(shape, SECONDS));
  for (const [name, rs] of Object.entries(results)) {
    const med = (f: (x: (typeof rs)[number]) => number) => percentile(rs.map(f).sort((a, b) => a - b), 50);
    const range = (f: (x: (typeof rs)[number]) => number) => `${Math.min(...rs.map(f)).toFixed(0)}–${Math.max(...rs.map(f)).toFixed(0)}`;
    console.log(
      `${name} sends: ${med((x) => x.perSecond).toFixed(0)} msg/s (${range((x) => x.perSecond)}), event loop ${med((x) => x.cpuUs).toFixed(1)} CPU-µs per message (${range((x) => x.cpuUs)}), ${med((x) => x.perPoll).toFixed(1)} messages per poll (medians of ${ROUNDS} rounds)`,
    );
  }
  running = false;
  await Promise.all(receiving);
  await store.close();
  await dir.remove();
}
