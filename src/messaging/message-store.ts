import type { Keystore } from '../storage/keystore.js';
import type { ReceivedMessage } from './inbox.js';

/** The keystore key of a received message. */
export const messageKey = (id: string) => `inbox!${id}`;

/**
 * The messages this device received, as the inbox stored them (`inbox!<id>`), and whether the user
 * has seen them: `inbox` and `messages` mark what they show as read; `get` only announces arrivals,
 * so what it received stays unread until one of them shows it.
 */
export class MessageStore {
  readonly #keystore: Keystore;

  constructor(keystore: Keystore) {
    this.#keystore = keystore;
  }

  /** Every stored message: the unread ones first, each group in the order they were sent. */
  async list(): Promise<ReceivedMessage[]> {
    // ICE signaling is kept only to know redeliveries: it is not a message anyone reads.
    const all = (await this.#keystore.list<ReceivedMessage>('inbox!')).map(([, m]) => m).filter((m) => !m.signal);
    const bySent = (a: ReceivedMessage, b: ReceivedMessage) => a.sentAt - b.sentAt || a.id.localeCompare(b.id);
    return [...all.filter((m) => !m.read).sort(bySent), ...all.filter((m) => m.read).sort(bySent)];
  }

  async get(id: string): Promise<ReceivedMessage | undefined> {
    return this.#keystore.get<ReceivedMessage>(messageKey(id));
  }

  /** Marks these messages read (unknown ids and those already read are left alone), in one batch. */
  async markRead(ids: readonly string[]): Promise<void> {
    const ops: Array<{ type: 'put'; key: string; value: unknown }> = [];
    for (const id of ids) {
      const m = await this.get(id);
      if (m && !m.read) ops.push({ type: 'put', key: messageKey(id), value: { ...m, read: true } });
    }
    if (ops.length) await this.#keystore.batch(ops);
  }
}
