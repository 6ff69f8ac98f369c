import { randomUUID } from 'node:crypto';
import type { Clock, ClockTimer } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import { sha256Hex } from '../../crypto/request-signature.js';
import type { Address, DeviceSendRequest, PlainSendRequest, PollResponse, SendRequest, SendResponse } from '../../protocol/messages.js';
import { base64Bytes, deviceChannel, type Notifier, type QueueLimits, type Recipient, type ServerStore, type SkippedDevice } from '../../storage/server-store.js';
import type { AuthContext } from './authenticator.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';

export interface MailboxComponents {
  store: ServerStore;
  notifier: Notifier;
  clock: Clock;
  logger: Logger;
  metrics?: ServerMetrics;
  /** Wake-ups and deadlines of held polls run inside it (as the continuation of their request). */
  faults?: FaultBoundary;
}

/** Receives the outcome of a poll: a batch, nothing (204), or an error. */
export type PollResponder = (batch: PollResponse | undefined, error?: unknown) => void;

/**
 * One held long-poll. A single object per poll (no promise chain stays alive while it waits), so a
 * server holds tens of thousands of them cheaply. It ends with a batch when a wake-up finds
 * messages, or with nothing on its deadline, when a newer poll of the device starts (on any server
 * process), on revocation or on shutdown; `cancel` ends it silently when the client goes away.
 */
class HeldPoll {
  readonly #mailbox: Mailbox;
  readonly #c: MailboxComponents;
  readonly #device: Address;
  readonly #id = randomUUID();
  readonly #limit: number;
  readonly #respond: PollResponder;
  #timer: ClockTimer | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  #fetching = false;
  #fetchAgain = false;
  #done = false;

  constructor(mailbox: Mailbox, components: MailboxComponents, device: Address, limit: number, respond: PollResponder) {
    this.#mailbox = mailbox;
    this.#c = components;
    this.#device = device;
    this.#limit = limit;
    this.#respond = respond;
  }

  async start(waitMs: number): Promise<void> {
    const channel = deviceChannel(this.#device);
    // Subscribe before announcing and before the first fetch, so no wake-up falls in between.
    this.#unsubscribe = await this.#c.notifier.subscribe(channel, this.#guard(this.#onNotify));
    this.#mailbox[kHeld].add(this);
    // Releasing an older poll and the first look at the queue go out together.
    await Promise.all([this.#c.notifier.publish(channel, `poll:${this.#id}`), this.#check()]);
    if (this.#done) return;
    if (waitMs <= 0) return this.finish(undefined);
    this.#timer = this.#c.clock.setTimeout(this.#guard(() => this.finish(undefined)), waitMs);
    this.#timer.unref?.();
  }

  /** A callback run inside the request boundary: a fault ends this poll with an internal error. */
  #guard<A extends unknown[]>(work: (...args: A) => unknown): (...args: A) => void {
    const faults = this.#c.faults;
    return faults ? faults.wrap('request', work, (err: unknown, ..._args: A) => this.finish(undefined, err)) : (...args: A) => void work(...args);
  }

  readonly #onNotify = (message: string): void => {
    if (message === 'message') void this.#check();
    else if (message === 'revoked' || (message.startsWith('poll:') && message !== `poll:${this.#id}`)) this.finish(undefined);
  };

  async #check(): Promise<void> {
    if (this.#done) return;
    if (this.#fetching) {
      this.#fetchAgain = true;
      return;
    }
    this.#fetching = true;
    try {
      do {
        this.#fetchAgain = false;
        const batch = await this.#c.store.fetch(this.#device, this.#limit);
        if (batch.messages.length > 0) return this.finish(batch);
      } while (this.#fetchAgain && !this.#done);
    } catch (err) {
      this.finish(undefined, err);
    } finally {
      this.#fetching = false;
    }
  }

  /** Ends the poll with this outcome (once). */
  finish(batch: PollResponse | undefined, error?: unknown): void {
    if (!this.#end()) return;
    if (batch) this.#c.metrics?.messagesDelivered.inc(batch.messages.length);
    this.#respond(batch, error);
  }

  /** Ends the poll without answering (the client is gone). */
  readonly cancel = (): void => {
    this.#end();
  };

  #end(): boolean {
    if (this.#done) return false;
    this.#done = true;
    if (this.#timer) this.#c.clock.clearTimeout(this.#timer);
    this.#mailbox[kHeld].delete(this);
    void this.#unsubscribe?.().catch((err: unknown) => this.#c.logger.warn({ err }, 'unsubscribe failed'));
    return true;
  }
}

const kHeld = Symbol('held polls');

/** The queue limits, with each sender's share of them. */
function queueLimits({ queue, queueSenderShare: share }: ServerOptions): QueueLimits {
  if (share >= 1) return queue;
  return { ...queue, perSender: { maxMessages: Math.max(1, Math.floor(queue.maxMessages * share)), maxBytes: Math.max(1, Math.floor(queue.maxBytes * share)) } };
}

/** The error of a send that reached no device: the sender's share first, then a full queue, then dormancy. */
function skippedError(skipped: readonly SkippedDevice[]): LanternError {
  const details = { skipped };
  if (skipped.some((s) => s.reason === 'share')) return new LanternError('LA_ERR_QUEUE_SHARE_USED', undefined, { details });
  if (skipped.some((s) => s.reason === 'full')) return new LanternError('LA_ERR_QUEUE_FULL', undefined, { details });
  return new LanternError('LA_ERR_RECIPIENT_DORMANT', undefined, { details });
}

/**
 * Store-and-forward transport: sends are queued durably per recipient device, polls return the
 * oldest messages or wait for a wake-up, acks delete. All shared state lives in the store and
 * wake-ups go through the notifier, so several server processes on one store behave as one.
 */
export class Mailbox {
  readonly #c: MailboxComponents;
  readonly #options: ServerOptions;
  readonly #queueLimits: QueueLimits;
  readonly [kHeld] = new Set<HeldPoll>();
  /** When this process last recorded each device's poll (see #recordPoll). */
  readonly #polled = new Map<string, number>();
  #stopping = false;

  constructor(components: MailboxComponents, options: ServerOptions) {
    this.#c = components;
    this.#options = options;
    this.#queueLimits = queueLimits(options);
  }

  get heldPolls(): number {
    return this[kHeld].size;
  }

  async send(sender: AuthContext, req: SendRequest): Promise<SendResponse> {
    const { store, notifier, clock } = this.#c;
    const now = clock.now();
    const recipients = 'messages' in req ? await this.#deviceRecipients(sender, req) : await this.#plainRecipients(sender, req);
    if (recipients.length === 0) return { devices: [] };
    const digest = sha256Hex(recipients.map((r) => `${r.deviceId}:${r.type}:${r.payload}`).join('\n'));
    // The rate limits, the device check, the write and the wake-up: one step on a shared store.
    const queued = await store.enqueue(
      recipients,
      {
        clientId: req.id,
        digest,
        from: { userId: sender.userId, deviceId: sender.deviceId },
        type: 0,
        payload: '',
        sentAt: now,
        expiresAt: now + this.#options.retentionMs,
      },
      this.#queueLimits,
      {
        now,
        activeDevicesOnly: true,
        dormantBefore: now - this.#options.dormantAfterMs,
        buckets: [
          { key: `pair:${sender.userId}:${sender.deviceId}>${req.to}`, cost: 1, policy: this.#options.rate.pair },
          { key: `bytes:${req.to}`, cost: recipients.reduce((sum, r) => sum + base64Bytes(r.payload), 0), policy: this.#options.rate.recipientBytes },
        ],
      },
    );
    if (queued.status === 'limited') {
      const what = queued.bucket === 0 ? 'Too many messages to this user' : 'Recipient is receiving too much data';
      throw new LanternError('LA_ERR_RATE_LIMITED', what, { details: { retryAfterMs: queued.retryAfterMs } });
    }
    const skipped = queued.skipped ?? [];
    if (queued.status === 'skipped') throw skippedError(skipped);
    const reached = recipients.filter((r) => !skipped.some((s) => s.deviceId === r.deviceId));
    if (queued.status === 'queued') this.#c.metrics?.messagesAccepted.inc(reached.length);
    if (!queued.notified) await Promise.all(reached.map((r) => notifier.publish(deviceChannel(r), 'message')));
    return { devices: reached.map((r) => r.deviceId), ...(skipped.length ? { skipped } : {}) };
  }


  /**
   * Answers with queued messages at once, or holds the poll up to `waitSeconds` for one (see
   * HeldPoll). Resolves once the poll is answered or held; `respond` gets the outcome. Call the
   * returned `cancel` when the client goes away.
   */
  async poll(device: Address, waitSeconds: number, limit: number, respond: PollResponder): Promise<{ cancel(): void }> {
    if (this.#stopping) throw new LanternError('LA_ERR_SHUTTING_DOWN');
    const recording = this.#recordPoll(device);
    if (recording) await recording;
    const held = new HeldPoll(this, this.#c, device, limit, respond);
    try {
      await held.start(Math.min(waitSeconds, this.#options.maxPollWaitSeconds) * 1000);
    } catch (err) {
      held.cancel();
      throw err;
    }
    return held;
  }

  /** One payload for one device, or for every active device of the user (but the sender). */
  async #plainRecipients(sender: AuthContext, req: PlainSendRequest): Promise<Array<Required<Recipient>>> {
    const { store } = this.#c;
    const one = (deviceId: number) => ({ userId: req.to, deviceId, type: req.type, payload: req.payload });
    // The store checks that the device is active (activeDevicesOnly), with the write.
    if (req.deviceId !== undefined) return [one(req.deviceId)];
    const devices = await store.listDevices(req.to);
    if (devices.length === 0) throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such user');
    // A fan-out to one's own user reaches one's other devices, not the sender.
    return devices.filter((d) => !(req.to === sender.userId && d.deviceId === sender.deviceId)).map((d) => one(d.deviceId));
  }

  /**
   * Per-device ciphertexts: the set must be exactly the user's registered devices (but the sender's
   * own), each for its current registration id; else 409 or 410 and nothing is stored.
   */
  async #deviceRecipients(sender: AuthContext, req: DeviceSendRequest): Promise<Array<Required<Recipient>>> {
    const registered = (await this.#c.store.registrations(req.to)).filter(
      (r) => !(req.to === sender.userId && r.deviceId === sender.deviceId),
    );
    if (registered.length === 0 && (await this.#c.store.listDevices(req.to)).length === 0) {
      throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such user');
    }
    const given = new Map(req.messages.map((m) => [m.deviceId, m]));
    if (given.size !== req.messages.length) throw new LanternError('LA_ERR_INVALID_REQUEST', 'A device appears twice');
    const current = new Map(registered.map((r) => [r.deviceId, r.registrationId]));
    const missingDevices = [...current.keys()].filter((id) => !given.has(id));
    const extraDevices = [...given.keys()].filter((id) => !current.has(id)).sort((a, b) => a - b);
    if (missingDevices.length > 0 || extraDevices.length > 0) {
      throw new LanternError('LA_ERR_DEVICE_MISMATCH', undefined, { details: { missingDevices, extraDevices } });
    }
    const staleDevices = req.messages.filter((m) => current.get(m.deviceId) !== m.registrationId).map((m) => m.deviceId);
    if (staleDevices.length > 0) throw new LanternError('LA_ERR_STALE_DEVICES', undefined, { details: { staleDevices } });
    return req.messages.map((m) => ({ userId: req.to, deviceId: m.deviceId, type: m.type, payload: m.payload }));
  }

  /**
   * Notes that the device polls (it is not dormant), written at most once per a tenth of
   * --dormant-after (and per hour) per device and process: polls stay reads. Undefined when
   * there is nothing to write (no promise to await on the hot path).
   */
  #recordPoll(device: Address): Promise<void> | undefined {
    const now = this.#c.clock.now();
    const key = `${device.userId}:${device.deviceId}`;
    const every = Math.min(3600_000, this.#options.dormantAfterMs / 10);
    const last = this.#polled.get(key);
    if (last !== undefined && now - last < every) return undefined;
    if (this.#polled.size >= 100_000) this.#polled.clear();
    this.#polled.set(key, now);
    return this.#c.store.recordPoll(device, now);
  }

  async ack(device: Address, ids: readonly string[]): Promise<number> {
    const acked = await this.#c.store.ack(device, ids);
    this.#c.metrics?.messagesAcked.inc(acked);
    return acked;
  }

  /** Answers every held poll (204) and refuses new ones. */
  releaseAll(): void {
    this.#stopping = true;
    for (const held of this[kHeld]) held.finish(undefined);
  }
}
