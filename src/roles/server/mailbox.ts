import { randomUUID } from 'node:crypto';
import type { Clock, ClockTimer } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { sha256Hex } from '../../crypto/request-signature.js';
import type { Address, PollResponse, SendRequest, SendResponse } from '../../protocol/messages.js';
import { base64Bytes, deviceChannel, type Notifier, type ServerStore } from '../../storage/server-store.js';
import type { AuthContext } from './authenticator.js';
import type { ServerOptions } from './options.js';

export interface MailboxComponents {
  store: ServerStore;
  notifier: Notifier;
  clock: Clock;
  logger: Logger;
}

/** Why a held poll ended without messages. */
export type PollEnd = 'timeout' | 'superseded' | 'shutdown' | 'closed';

/**
 * Store-and-forward transport: sends are queued durably per recipient device, polls return the
 * oldest messages or wait for a wake-up, acks delete. All shared state lives in the store and
 * wake-ups go through the notifier, so several server processes on one store behave as one.
 */
export class Mailbox {
  readonly #c: MailboxComponents;
  readonly #options: ServerOptions;
  readonly #held = new Set<(end: PollEnd) => void>();
  #stopping = false;

  constructor(components: MailboxComponents, options: ServerOptions) {
    this.#c = components;
    this.#options = options;
  }

  get heldPolls(): number {
    return this.#held.size;
  }

  async send(sender: AuthContext, req: SendRequest): Promise<SendResponse> {
    const { store, notifier, clock } = this.#c;
    const now = clock.now();
    const pair = await store.takeTokens(`pair:${sender.userId}:${sender.deviceId}>${req.to}`, 1, this.#options.rate.pair, now);
    if (!pair.ok) throw new LanternError('LA_ERR_RATE_LIMITED', 'Too many messages to this user', { details: { retryAfterMs: pair.retryAfterMs } });
    let recipients: Address[];
    if (req.deviceId !== undefined) {
      const device = await store.getDevice(req.to, req.deviceId);
      if (!device || device.revokedAt !== undefined) throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such device');
      recipients = [{ userId: req.to, deviceId: req.deviceId }];
    } else {
      const devices = await store.listDevices(req.to);
      if (devices.length === 0) throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such user');
      recipients = devices
        .map((d) => ({ userId: req.to, deviceId: d.deviceId }))
        // A fan-out to one's own user reaches one's other devices, not the sender.
        .filter((a) => !(a.userId === sender.userId && a.deviceId === sender.deviceId));
      if (recipients.length === 0) return { devices: [] };
    }
    const bytes = base64Bytes(req.payload) * recipients.length;
    const quota = await store.takeTokens(`bytes:${req.to}`, bytes, this.#options.rate.recipientBytes, now);
    if (!quota.ok) {
      throw new LanternError('LA_ERR_RATE_LIMITED', 'Recipient is receiving too much data', { details: { retryAfterMs: quota.retryAfterMs } });
    }
    const digest = sha256Hex(`${req.type}\n${req.deviceId ?? '*'}\n${req.payload}`);
    await store.enqueue(
      recipients,
      {
        clientId: req.id,
        digest,
        from: { userId: sender.userId, deviceId: sender.deviceId },
        type: req.type,
        payload: req.payload,
        sentAt: now,
        expiresAt: now + this.#options.retentionMs,
      },
      this.#options.queue,
    );
    await Promise.all(recipients.map((r) => notifier.publish(deviceChannel(r), 'message')));
    return { devices: recipients.map((r) => r.deviceId) };
  }

  /**
   * Returns queued messages at once, or waits up to `waitSeconds` for one. A newer poll of the same
   * device (on any server process) ends this one with `undefined` (the HTTP layer answers 204).
   * `closed` resolves when the client goes away.
   */
  async poll(device: Address, waitSeconds: number, limit: number, closed: Promise<void>): Promise<PollResponse | undefined> {
    const { store, notifier, clock } = this.#c;
    if (this.#stopping) throw new LanternError('LA_ERR_SHUTTING_DOWN');
    const channel = deviceChannel(device);
    const pollId = randomUUID();
    let wake: (() => void) | undefined;
    let end: ((why: PollEnd) => void) | undefined;
    const ended = new Promise<PollEnd>((resolve) => (end = resolve));
    const unsubscribe = await notifier.subscribe(channel, (message) => {
      if (message === 'message') wake?.();
      else if (message === 'revoked') end?.('superseded');
      else if (message.startsWith('poll:') && message !== `poll:${pollId}`) end?.('superseded');
    });
    this.#held.add(end!);
    let timer: ClockTimer | undefined;
    try {
      await notifier.publish(channel, `poll:${pollId}`);
      const wait = Math.min(waitSeconds, this.#options.maxPollWaitSeconds) * 1000;
      const deadline = clock.now() + wait;
      if (wait > 0) {
        timer = clock.setTimeout(() => end?.('timeout'), wait);
        timer.unref?.();
      }
      void closed.then(() => end?.('closed'));
      for (;;) {
        const woken = new Promise<'wake'>((resolve) => (wake = () => resolve('wake')));
        const batch = await store.fetch(device, limit);
        if (batch.messages.length > 0) return batch;
        if (wait <= 0 || clock.now() >= deadline) return undefined;
        const why = await Promise.race([woken, ended]);
        if (why !== 'wake') return undefined;
      }
    } finally {
      if (timer) clock.clearTimeout(timer);
      this.#held.delete(end!);
      await unsubscribe();
    }
  }

  ack(device: Address, ids: readonly string[]): Promise<number> {
    return this.#c.store.ack(device, ids);
  }

  /** Answers every held poll (204) and refuses new ones. */
  releaseAll(): void {
    this.#stopping = true;
    for (const end of this.#held) end('shutdown');
  }
}
