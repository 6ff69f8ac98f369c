import { Duplex } from 'node:stream';
import type { DataChannel } from 'node-datachannel';
import { closeChannel, whenClosed } from './channels.js';

/** Bytes a sender may have unacknowledged on one channel: the receiver buffers at most this. */
export const CHANNEL_WINDOW = 1 << 20;
/** Binary messages carry at most this much (usrsctp fragments larger ones, at a latency cost). */
export const MAX_CHANNEL_MESSAGE = 64 * 1024;
/** A stream destroyed after its end keeps the channel this long at most for the end's acknowledgment. */
const LINGER_MS = 5000;
/** Writes wait while the channel's own send buffer holds more than this… */
const SEND_HIGH_WATER = 1 << 20;
/** …until it drains below this. */
const SEND_LOW_WATER = 256 * 1024;

/**
 * A data channel as a byte stream with flow control both ways.
 *
 * A data channel delivers every message to a callback and cannot be paused, so a receiver that
 * reads slower than the sender writes would buffer without bound (node-datachannel's own
 * DataChannelStream drops messages instead). Here the sender may have at most `window` bytes
 * unacknowledged; the receiver acknowledges bytes as its reader consumes them. Data travels as
 * binary messages; control as string messages (the two are told apart by the SCTP payload
 * protocol id, so data needs no framing):
 *
 * - `{"credit":N}`: N more bytes consumed, the sender may send them;
 * - `{"end":true}`: the sender will write no more (a half close, like TCP's FIN);
 * - `{"endack":true}`: the peer's end, and so everything it sent before, has been received.
 *
 * node-datachannel delivers a channel's closed event and its messages through separate queues,
 * and drops messages still queued once the closed event has run: a closed event can overtake the
 * last messages. So a side closes the channel only when it has both ends and the peer has
 * acknowledged its own end: by then the peer holds everything, and its closed event loses nothing.
 *
 * A peer that sends beyond its window, or a string that is no control message, is a protocol
 * error: the stream is destroyed and the channel closed. A channel that closes before `end` ends
 * the stream with an error (the peer vanished mid-stream).
 */
export class ChannelStream extends Duplex {
  readonly #dc: DataChannel;
  readonly #window: number;
  /** Bytes we may still send before the peer's next credit. */
  #sendCredit: number;
  /** Bytes received, and bytes acknowledged to the peer. */
  #received = 0;
  #acknowledged = 0;
  /**
   * What arrived and the reader has not asked for yet (at most a window, by the protocol). Data
   * moves to the stream's own buffer only as the reader asks, and is acknowledged as it moves.
   */
  readonly #queue: Buffer[] = [];
  #freed = 0;
  #wantRead = false;
  #endPushed = false;
  #blocked: (() => void) | undefined;
  #remoteEnded = false;
  #localEnded = false;
  #endAcknowledged = false;
  #preface: ((text: string) => void) | undefined;
  #idle: { ms: number; onIdle: () => void; timer: NodeJS.Timeout | undefined } | undefined;
  /** Set while a destroyed stream waits for its end's acknowledgment before closing the channel. */
  #linger: (() => void) | undefined;

  /**
   * `preface`: the peer's first string message (a tunnel's answer) goes to it before the stream
   * starts; a throw there ends the stream with that error. Owning the channel's message callback
   * from the start matters: data that follows the answer at once must not reach another handler.
   */
  constructor(dc: DataChannel, options: { window?: number; preface?: (text: string) => void } = {}) {
    // Not destroyed when both halves are done: the channel closes only once our end is acknowledged.
    super({ allowHalfOpen: true, autoDestroy: false, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.#dc = dc;
    this.#window = options.window ?? CHANNEL_WINDOW;
    this.#sendCredit = this.#window;
    this.#preface = options.preface;
    dc.setBufferedAmountLowThreshold(SEND_LOW_WATER);
    dc.onBufferedAmountLow(() => this.#unblock());
    dc.onMessage((msg) => this.#onMessage(msg));
    // (The channel was adopted into channels.ts, which owns its one closed callback.)
    whenClosed(dc, () => {
      if (this.destroyed) return;
      if (!this.#remoteEnded || !this.#localEnded) this.destroy(new Error(`the data channel closed mid-stream (ended: ${this.#localEnded ? 'ours' : 'not ours'}, ${this.#remoteEnded ? 'theirs' : 'not theirs'})`));
      else this.destroy();
    });
    dc.onError((err) => this.destroy(new Error(`data channel: ${err}`)));
  }

  /** Sends one string message ahead of the data (a tunnel's answer). */
  sendPreface(text: string): boolean {
    return this.#send(text);
  }

  /**
   * Like a socket's: 'timeout' once nothing has come or gone for `ms` (0 turns it off), `onIdle`
   * as a one-time listener of it; each message either way starts the wait again. (An HTTP agent
   * keeping the stream between requests sets it without a callback and listens for 'timeout'.)
   */
  setTimeout(ms: number, onIdle?: () => void): this {
    if (onIdle) this.once('timeout', onIdle);
    if (this.#idle?.timer) clearTimeout(this.#idle.timer);
    this.#idle = ms > 0 ? { ms, onIdle: () => this.emit('timeout'), timer: undefined } : undefined;
    this.#touch();
    return this;
  }

  #touch(): void {
    const idle = this.#idle;
    if (!idle || this.destroyed) return;
    if (idle.timer) clearTimeout(idle.timer);
    idle.timer = setTimeout(idle.onIdle, idle.ms);
    idle.timer.unref();
  }

  #onMessage(msg: string | Buffer | ArrayBuffer): void {
    if (this.destroyed) {
      if (this.#linger && typeof msg === 'string' && msg.includes('endack')) this.#linger();
      return;
    }
    this.#touch();
    if (this.#preface) {
      const preface = this.#preface;
      this.#preface = undefined;
      try {
        if (typeof msg !== 'string') throw new Error('data before the answer');
        preface(msg);
      } catch (err) {
        this.destroy(err as Error);
      }
      return;
    }
    if (typeof msg === 'string') return this.#onControl(msg);
    // A copy: the binding's buffer is not ours to keep past this callback.
    const data = Buffer.from(msg as Uint8Array);
    if (this.#remoteEnded) return void this.destroy(new Error('data after end'));
    this.#received += data.length;
    if (this.#received - this.#acknowledged > this.#window) return void this.destroy(new Error('the peer sent beyond its window'));
    this.#queue.push(data);
    if (this.#wantRead) this.#drain();
  }

  #onControl(text: string): void {
    let control: { credit?: unknown; end?: unknown; endack?: unknown };
    try {
      control = JSON.parse(text) as typeof control;
    } catch {
      return void this.destroy(new Error('a control message that is not JSON'));
    }
    if (typeof control.credit === 'number' && Number.isSafeInteger(control.credit) && control.credit > 0) {
      this.#sendCredit += control.credit;
      this.#unblock();
    } else if (control.end === true && !this.#remoteEnded) {
      this.#remoteEnded = true;
      this.#send(JSON.stringify({ endack: true }));
      if (this.#wantRead) this.#drain();
      this.#closeIfDone();
    } else if (control.endack === true && this.#localEnded) {
      this.#endAcknowledged = true;
      this.#closeIfDone();
    } else {
      this.destroy(new Error('an unknown control message'));
    }
  }

  #unblock(): void {
    const blocked = this.#blocked;
    this.#blocked = undefined;
    blocked?.();
  }

  override _read(): void {
    this.#wantRead = true;
    this.#drain();
  }

  /**
   * Hands queued data to the reader while it wants more, then acknowledges what left the queue:
   * a quarter window at a time, or all of it once the queue is empty.
   */
  #drain(): void {
    while (this.#wantRead && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      this.#freed += chunk.length;
      this.#wantRead = this.push(chunk);
    }
    if (this.#queue.length === 0 && this.#remoteEnded && !this.#endPushed) {
      this.#endPushed = true;
      this.push(null);
    }
    if (this.#freed > 0 && (this.#freed >= this.#window / 4 || this.#queue.length === 0) && !this.#remoteEnded) {
      this.#acknowledged += this.#freed;
      this.#send(JSON.stringify({ credit: this.#freed }));
      this.#freed = 0;
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    let offset = 0;
    const pump = () => {
      while (offset < chunk.length) {
        if (this.destroyed) return callback(new Error('stream destroyed'));
        if (this.#sendCredit <= 0 || this.#dc.bufferedAmount() > SEND_HIGH_WATER) {
          this.#blocked = pump;
          return;
        }
        const size = Math.min(MAX_CHANNEL_MESSAGE, chunk.length - offset, this.#sendCredit);
        if (!this.#send(chunk.subarray(offset, offset + size))) return callback(new Error('the data channel is closed'));
        this.#sendCredit -= size;
        offset += size;
        this.#touch();
      }
      callback();
    };
    pump();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#localEnded = true;
    this.#send(JSON.stringify({ end: true }));
    this.#closeIfDone();
    callback();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#blocked = undefined;
    if (this.#idle?.timer) clearTimeout(this.#idle.timer);
    if (!err && this.#localEnded && !this.#endAcknowledged && this.#dc.isOpen()) {
      // Destroyed after its end, as a socket is once its FIN is sent (closeAfterFlush): the channel
      // stays until the peer acknowledges the end, since a close could overtake what we sent.
      const timer = setTimeout(() => closeChannel(this.#dc), LINGER_MS);
      timer.unref();
      this.#linger = () => {
        this.#linger = undefined;
        clearTimeout(timer);
        closeChannel(this.#dc);
      };
    } else closeChannel(this.#dc);
    callback(err);
  }

  /**
   * Both ways ended, our end acknowledged, everything read: the channel goes (its stream id is
   * reused by later tunnels). The peer, whose end we acknowledged, may close first: also clean.
   */
  #closeIfDone(): void {
    if (!this.#localEnded || !this.#remoteEnded || !this.#endAcknowledged) return;
    if (this.readableEnded) setImmediate(() => this.destroy());
    else this.once('end', () => setImmediate(() => this.destroy()));
  }

  /** Sends (or queues: libdatachannel's `false` means queued, not failed); false when the channel is gone. */
  #send(message: string | Buffer): boolean {
    try {
      if (!this.#dc.isOpen()) return false;
      if (typeof message === 'string') this.#dc.sendMessage(message);
      else this.#dc.sendMessageBinary(message);
      return true;
    } catch {
      return false;
    }
  }
}
