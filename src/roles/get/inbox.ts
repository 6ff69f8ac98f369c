import type { Logger } from '../../core/logger.js';
import type { ApiClient } from '../../net/api-client.js';
import type { Address, DeliveredMessage } from '../../protocol/messages.js';
import type { Keystore } from '../../storage/keystore.js';

/** A message as kept in the keystore and shown to the user. */
export interface ReceivedMessage {
  id: string;
  from: Address;
  sentAt: number;
  type: number;
  text: string;
}

const key = (id: string) => `inbox!${id}`;

/** Decodes a delivered message; until end-to-end encryption exists, payloads are the text itself. */
function decode(m: DeliveredMessage): ReceivedMessage {
  return { id: m.id, from: m.from, sentAt: m.sentAt, type: m.type, text: Buffer.from(m.payload, 'base64').toString('utf8') };
}

/**
 * Receives one batch: long-polls, stores each new message durably in the keystore, then acks the
 * whole batch. A message already stored (a redelivery after a lost ack) is acked again but not
 * returned, so the caller shows each message once.
 */
export class Inbox {
  readonly #api: ApiClient;
  readonly #keystore: Keystore;
  readonly #logger: Logger;

  constructor(components: { api: ApiClient; keystore: Keystore; logger: Logger }) {
    this.#api = components.api;
    this.#keystore = components.keystore;
    this.#logger = components.logger;
  }

  async receive(waitSeconds: number, limit = 100, signal?: AbortSignal): Promise<{ messages: ReceivedMessage[]; more: boolean } | undefined> {
    const batch = await this.#api.poll(waitSeconds, limit, signal);
    if (!batch) return undefined;
    const fresh: ReceivedMessage[] = [];
    const ops: Array<{ type: 'put'; key: string; value: unknown }> = [];
    for (const m of batch.messages) {
      if ((await this.#keystore.get(key(m.id))) !== undefined || fresh.some((f) => f.id === m.id)) continue;
      const received = decode(m);
      fresh.push(received);
      ops.push({ type: 'put', key: key(m.id), value: received });
    }
    await this.#keystore.batch(ops);
    await this.#api.ack(batch.messages.map((m) => m.id));
    if (fresh.length < batch.messages.length) {
      this.#logger.debug({ duplicates: batch.messages.length - fresh.length }, 'dropped redelivered messages');
    }
    return { messages: fresh, more: batch.more };
  }

  /** Messages kept in the keystore, oldest id order. */
  async stored(): Promise<ReceivedMessage[]> {
    return (await this.#keystore.list<ReceivedMessage>('inbox!')).map(([, m]) => m);
  }
}
