// Shared by the signaling and cluster benchmarks: receivers that long-poll and ack, measuring the
// latency from the send time stamped in each payload, and a fixed-rate sender.
import { randomUUID } from 'node:crypto';
import type { ApiClient } from '../../src/net/api-client.js';

export function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A payload stamped with the time it is sent. */
export const stampedPayload = () => Buffer.from(String(performance.now())).toString('base64');

export interface Receiving {
  received: number;
  latencies: number[];
  /** Counts from zero again. */
  reset(): void;
  stop(): Promise<void>;
}

/**
 * Long-poll loops, one per receiver: latency from the stamp in each payload; every batch acked,
 * in the next poll (one request per batch), or with its own request when `separateAcks`.
 */
export function startReceiving(apis: ApiClient[], separateAcks = false): Receiving {
  let running = true;
  const state: Receiving = {
    received: 0,
    latencies: [],
    reset() {
      state.received = 0;
      state.latencies = [];
    },
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
  const loops = apis.map(async (api) => {
    let pending: string[] = [];
    while (running) {
      const batch = await api.poll(2, 500, undefined, pending).catch(() => undefined);
      pending = [];
      if (!batch) continue;
      const now = performance.now();
      for (const m of batch.messages) state.latencies.push(now - Number(Buffer.from(m.payload, 'base64').toString()));
      state.received += batch.messages.length;
      if (separateAcks) await api.ack(batch.messages.map((m) => m.id));
      else pending = batch.messages.map((m) => m.id);
    }
    if (pending.length) await api.ack(pending).catch(() => undefined);
  });
  return state;
}

export interface FixedRateResult {
  total: number;
  delivered: number;
  p50: number;
  p99: number;
  sendP50: number;
  sendP99: number;
  lateSends: number;
}

/** Message i is sent at t0 + i/rate for `seconds`; waits (up to 10 s) until all are received. */
export async function fixedRate(send: (i: number) => Promise<unknown>, receiving: Receiving, rate: number, seconds: number): Promise<FixedRateResult> {
  receiving.reset();
  const total = rate * seconds;
  const t0 = performance.now();
  const inflight: Promise<unknown>[] = [];
  const sendRtt: number[] = [];
  let lateSends = 0;
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    else if (wait < -50) lateSends++;
    const issued = performance.now();
    inflight.push(send(i).then(() => sendRtt.push(performance.now() - issued)));
  }
  await Promise.all(inflight);
  const deadline = performance.now() + 10_000;
  while (receiving.received < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const sorted = receiving.latencies.sort((a, b) => a - b);
  const rtt = sendRtt.sort((a, b) => a - b);
  return { total, delivered: receiving.received, p50: percentile(sorted, 50), p99: percentile(sorted, 99), sendP50: percentile(rtt, 50), sendP99: percentile(rtt, 99), lateSends };
}

export interface DurableResult {
  sent: number;
  received: number;
  seconds: number;
  perSecond: number;
  deliveryP50: number;
}

/**
 * Durable throughput: a closed loop, each of `senders` sending batches of 50 messages (POST
 * /v1/messages/batch) for `seconds`, each answered once stored; counts the messages received by
 * long-poll and acked, waiting up to 10 s for the last.
 */
export async function durableThroughput(senders: ApiClient[], to: string[], receiving: Receiving, seconds: number): Promise<DurableResult> {
  receiving.reset();
  const start = performance.now();
  const sent = await batchesOf50(senders, seconds, async (api, base) => {
    const messages = Array.from({ length: 50 }, (_, j) => ({ id: randomUUID(), to: to[(base + j) % to.length]!, deviceId: 1, type: 0, payload: stampedPayload() }));
    const { results } = await api.sendBatch(messages);
    if (results.some((r) => 'error' in r)) throw new Error(`batch send failed: ${JSON.stringify(results.find((r) => 'error' in r))}`);
  });
  await drained(() => receiving.received, sent);
  const elapsed = (performance.now() - start) / 1000;
  const lat = receiving.latencies.sort((a, b) => a - b);
  return { sent, received: receiving.received, seconds: elapsed, perSecond: receiving.received / elapsed, deliveryP50: percentile(lat, 50) };
}

/**
 * A closed loop for `seconds`: each sender sends messages base..base+49 (`send`), waits for them,
 * and sends the next fifty. Answers how many were sent.
 */
export async function batchesOf50<S>(senders: readonly S[], seconds: number, send: (sender: S, base: number) => Promise<void>): Promise<number> {
  let sent = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    senders.map(async (sender) => {
      while (performance.now() < until) {
        const base = sent;
        sent += 50;
        await send(sender, base);
      }
    }),
  );
  return sent;
}

/** Waits until `received()` reaches `sent`, for at most 10 s. */
export async function drained(received: () => number, sent: number): Promise<void> {
  const until = performance.now() + 10_000;
  while (received() < sent && performance.now() < until) await new Promise((r) => setTimeout(r, 5));
}
