import type { Clock } from '../core/clock.js';
import { LanternError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { PollResponse } from '../protocol/messages.js';
import { Backoff, SERVER_BACKOFF, sleep, type BackoffPolicy } from './retry.js';

export interface LongPollOptions {
  clock: Clock;
  logger: Logger;
  /** Stops the loop: a held poll is cancelled, stored messages are acked, the loop returns. */
  signal: AbortSignal;
  /** One long poll, carrying the ids of the last stored batch (`?ack=`). */
  poll(acks: string[], signal: AbortSignal): Promise<PollResponse | undefined>;
  /** Stores a batch durably; its messages are acked only after this returns. */
  handle(batch: PollResponse): Promise<void>;
  /** Acks what is left when the loop ends. */
  ack(ids: string[]): Promise<unknown>;
  /** Keep polling (else: one poll, its batch stored and acked, and the loop ends). */
  follow: boolean;
  /** Failures that are waited out and retried; any other ends the loop with it. Default: all. */
  retryable?(err: unknown): boolean;
  policy?: BackoffPolicy;
}

/**
 * The one receive loop (get, `inbox`): long-polls, hands each batch to `handle`, and acks a stored
 * batch with the next poll, so a batch costs one request. Nothing is acked before it is stored: a
 * batch whose handling failed comes again. A failed poll keeps the acks it carried, and the loop
 * waits (SERVER_BACKOFF unless said) before it polls again. When it ends, the acks still held are
 * sent on their own.
 */
export async function longPoll(o: LongPollOptions): Promise<void> {
  const backoff = new Backoff(o.policy ?? SERVER_BACKOFF);
  let acks: string[] = [];
  try {
    while (!o.signal.aborted) {
      try {
        const batch = await o.poll(acks, o.signal);
        acks = [];
        if (batch) {
          await o.handle(batch);
          acks = batch.messages.map((m) => m.id);
        }
        backoff.reset();
      } catch (err) {
        if (o.signal.aborted) break;
        if (o.retryable && !o.retryable(err)) throw err;
        const wait = backoff.next();
        o.logger.warn({ code: LanternError.is(err) ? err.code : undefined, retryInMs: wait }, 'receiving failed; retrying');
        await sleep(o.clock, wait, o.signal);
        continue;
      }
      if (!o.follow) break;
    }
  } finally {
    if (acks.length) await o.ack(acks).catch((err: unknown) => o.logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'final ack failed; the messages come again and are dropped as seen'));
  }
}
