import { once } from 'node:events';
import WebSocket from 'ws';

/** A raw PeerJS signaling connection for black-box tests: every frame it receives, and its close. */
export class RawPeer {
  readonly frames: Array<Record<string, unknown>> = [];
  readonly socket: WebSocket;
  readonly closed: Promise<{ code: number; at: number }>;
  readonly #waiters = new Set<() => void>();

  /** `heartbeatMs`: send HEARTBEAT this often once open, as PeerJS clients do (0: stay silent). */
  constructor(url: string, options: { heartbeatMs?: number; ca?: string } = {}) {
    this.socket = new WebSocket(url, options.ca ? { ca: options.ca } : {});
    const every = options.heartbeatMs ?? 500;
    if (every > 0) {
      const timer = setInterval(() => {
        if (this.socket.readyState === WebSocket.OPEN) this.socket.send('{"type":"HEARTBEAT"}');
      }, every);
      this.socket.once('close', () => clearInterval(timer));
    }
    this.socket.on('message', (data) => {
      let frame: Record<string, unknown>;
      try {
        frame = JSON.parse(data.toString()) as Record<string, unknown>;
      } catch {
        frame = { unparsable: data.toString() };
      }
      this.frames.push(frame);
      for (const wake of this.#waiters) wake();
    });
    this.socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => this.socket.once('close', (code) => resolve({ code, at: Date.now() })));
  }

  /** The first frame (from `from` on) that matches, waiting up to `timeoutMs`. */
  async next(match: (f: Record<string, unknown>) => boolean, timeoutMs = 3000, from = 0): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.slice(from).find(match);
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /** Waits for the socket to be open (or closed). */
  async opened(): Promise<void> {
    if (this.socket.readyState === WebSocket.OPEN) return;
    await Promise.race([once(this.socket, 'open'), this.closed]);
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  close(): void {
    this.socket.terminate();
  }
}
