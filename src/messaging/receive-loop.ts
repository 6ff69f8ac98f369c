import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/logger.js';
import { longPoll } from '../net/long-poll.js';
import type { PollResponse } from '../protocol/messages.js';
import type { ReceivedMessage } from './inbox.js';

/** What a role's receive loop asks of the server. */
export interface ReceiveApi {
  poll(waitSeconds: number, limit: number, signal: AbortSignal, ack: readonly string[]): Promise<PollResponse | undefined>;
  ack(ids: string[]): Promise<unknown>;
  /** Whether a poll answer said this device's one-time keys run low (cleared by reading it). */
  takeKeysLow?(): boolean;
}

export interface ReceiveLoopOptions {
  api: ReceiveApi;
  clock: Clock;
  logger: Logger;
  /** Ends the loop (what was stored is acked). */
  signal: AbortSignal;
  /** Decrypts and stores a batch; the messages new to this device. */
  receive(batch: PollResponse): Promise<ReceivedMessage[]>;
  /** Each new message, in order, once its batch is stored (not awaited: ICE is not waited for here). */
  onMessage(message: ReceivedMessage): void;
  topUpKeys?(): Promise<void>;
  /** How long each poll may be held (default 30 s). */
  waitSeconds?: number;
}

/**
 * The receive loop of a long-running role that takes ICE signaling (give, verify): long polls, each
 * batch stored before it is acked (net/long-poll), one-time keys topped up when the server says
 * they run low, and each new message handed on.
 */
export function receiveLoop(o: ReceiveLoopOptions): Promise<void> {
  return longPoll({
    clock: o.clock,
    logger: o.logger,
    signal: o.signal,
    follow: true,
    poll: async (acks, signal) => {
      const batch = await o.api.poll(o.waitSeconds ?? 30, 100, signal, acks);
      if (o.api.takeKeysLow?.()) await o.topUpKeys?.();
      return batch;
    },
    handle: async (batch) => {
      for (const m of await o.receive(batch)) o.onMessage(m);
    },
    ack: (ids) => o.api.ack(ids),
  });
}
