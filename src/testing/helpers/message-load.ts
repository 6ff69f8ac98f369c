import { randomUUID } from 'node:crypto';
import type { ApiClient } from '../../net/api-client.js';

/**
 * Senders and receivers in pairs, as the failover tests drive them: each sender sends to its
 * receiver's device 1 as fast as it is answered, retrying a failed send with the same id (the
 * server dedupes) for up to 20 s; each receiver long-polls, records and acks. What was answered and
 * what arrived are kept by their payload tags, so a test can say whether an answered send was lost.
 */
export function messageLoad(pairs: Array<{ sender: ApiClient; receiver: ApiClient; to: string }>) {
  const answered = new Set<string>();
  const received = new Set<string>();
  let sendFailures = 0;
  let sending = true;
  let receiving = true;
  const senders = pairs.map(async ({ sender, to }, p) => {
    while (sending) {
      const tag = `${p}:${randomUUID()}`;
      const id = randomUUID();
      for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
        try {
          await sender.send({ id, to, deviceId: 1, type: 0, payload: Buffer.from(tag).toString('base64') });
          answered.add(tag);
          break;
        } catch {
          sendFailures++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  });
  const receivers = pairs.map(async ({ receiver }) => {
    while (receiving) {
      try {
        const batch = await receiver.poll(2, 100);
        if (!batch) continue;
        for (const m of batch.messages) received.add(Buffer.from(m.payload, 'base64').toString());
        await receiver.ack(batch.messages.map((m) => m.id));
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  return {
    answered,
    received,
    sendFailures: () => sendFailures,
    /** Stops sending, waits (up to `drainMs`) for every answered send to arrive, stops receiving; the lost tags. */
    async finish(drainMs: number): Promise<string[]> {
      sending = false;
      await Promise.all(senders);
      const deadline = Date.now() + drainMs;
      while ([...answered].some((m) => !received.has(m)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      receiving = false;
      await Promise.all(receivers);
      return [...answered].filter((m) => !received.has(m));
    },
  };
}
