import { EventEmitter } from 'node:events';
import type { Notifier } from './server-store.js';

/** In-process wake-ups, for servers whose store is not shared with other processes. */
export class MemoryNotifier implements Notifier {
  #emitter = new EventEmitter().setMaxListeners(0);

  async subscribe(channel: string, listener: (message: string) => void): Promise<() => Promise<void>> {
    this.#emitter.on(channel, listener);
    return async () => {
      this.#emitter.off(channel, listener);
    };
  }

  async publish(channel: string, message: string): Promise<number> {
    const n = this.#emitter.listenerCount(channel);
    this.#emitter.emit(channel, message);
    return n;
  }

  async close(): Promise<void> {
    this.#emitter.removeAllListeners();
  }
}
