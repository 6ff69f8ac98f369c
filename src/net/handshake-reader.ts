import type { Socket } from 'node:net';
import { LanternError } from '../core/errors.js';

/**
 * One step of an incremental parser: given every byte received so far (and not yet used by an
 * earlier step), either the parsed value and how many bytes it used, or `undefined` when more
 * bytes are needed. Throws LA_ERR_PROTOCOL when the bytes can never become valid.
 */
export type ParseStep<T> = (buffered: Buffer) => { value: T; used: number } | undefined;

export interface HandshakeReaderOptions {
  /** Most bytes held while a step waits for more: beyond, the handshake is malformed. */
  maxBytes: number;
}

/**
 * Reads a handshake (SOCKS5 greeting, an HTTP request head…) from a socket with incremental
 * parsers fed by `data` events: nothing polls, nothing re-arms `readable`, and a step that gets
 * its bytes in a hundred segments costs the same as one that gets them in one. Each step has its
 * own deadline. While no step waits, at most `maxBytes` are taken from the socket, then it is
 * paused (backpressure, not an error: a client may send its first data before the handshake
 * answer). `release()` hands the socket back, paused, with the bytes read past the handshake.
 */
export class HandshakeReader {
  readonly #socket: Socket;
  readonly #max: number;
  #chunks: Buffer[] = [];
  #size = 0;
  /** What earlier steps used (a handshake is small: at most `maxBytes` per step). */
  readonly #used: Buffer[] = [];
  #ended = false;
  #released = false;
  #waiting: { attempt: () => void; fail: (err: LanternError) => void } | undefined;

  readonly #onData = (chunk: Buffer) => {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    if (this.#waiting) this.#waiting.attempt();
    else if (this.#size >= this.#max) this.#socket.pause();
  };

  readonly #onEnd = () => {
    this.#ended = true;
    this.#waiting?.fail(new LanternError('LA_ERR_PROTOCOL', 'The peer closed the connection during the handshake'));
  };

  constructor(socket: Socket, options: HandshakeReaderOptions) {
    this.#socket = socket;
    this.#max = options.maxBytes;
    socket.on('data', this.#onData);
    socket.once('end', this.#onEnd);
    socket.once('close', this.#onEnd);
  }

  /** Bytes received and not used yet. */
  get buffered(): number {
    return this.#size;
  }

  /** Runs one parse step on what has arrived and what arrives within `deadlineMs`. */
  read<T>(parse: ParseStep<T>, deadlineMs: number): Promise<T> {
    if (this.#released) return Promise.reject(new Error('HandshakeReader: read after release'));
    if (this.#waiting) return Promise.reject(new Error('HandshakeReader: one step at a time'));
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const finish = () => {
        this.#waiting = undefined;
        if (timer) clearTimeout(timer);
      };
      const fail = (err: LanternError) => {
        finish();
        reject(err);
      };
      const attempt = () => {
        const buffered = this.#take();
        let parsed: { value: T; used: number } | undefined;
        try {
          parsed = parse(buffered);
        } catch (err) {
          return fail(LanternError.is(err) ? err : new LanternError('LA_ERR_PROTOCOL', undefined, { cause: err }));
        }
        if (parsed) {
          if (parsed.used > 0) this.#used.push(Buffer.from(buffered.subarray(0, parsed.used)));
          const rest = buffered.subarray(parsed.used);
          this.#chunks = rest.length ? [rest] : [];
          this.#size = rest.length;
          finish();
          return resolve(parsed.value);
        }
        if (this.#size >= this.#max) return fail(new LanternError('LA_ERR_PROTOCOL', `Handshake larger than ${this.#max} bytes`));
        if (this.#ended) return fail(new LanternError('LA_ERR_PROTOCOL', 'The peer closed the connection during the handshake'));
      };
      this.#waiting = { attempt, fail };
      // Most steps complete on bytes already here (one packet carries the whole handshake): no timer then.
      attempt();
      if (!this.#waiting) return;
      timer = setTimeout(() => fail(new LanternError('LA_ERR_REQUEST_TIMEOUT', `No complete handshake step within ${deadlineMs} ms`)), deadlineMs);
      if (this.#socket.isPaused()) this.#socket.resume();
    });
  }

  /** Stops reading: the socket is left paused; returns the bytes read past the handshake. */
  release(): Buffer {
    if (!this.#released) {
      this.#released = true;
      this.#socket.pause();
      this.#socket.off('data', this.#onData);
      this.#socket.off('end', this.#onEnd);
      this.#socket.off('close', this.#onEnd);
    }
    const rest = this.#take();
    this.#chunks = [];
    this.#size = 0;
    return rest;
  }

  /** Stops reading, like `release`, and returns every byte received since the reader began. */
  replay(): Buffer {
    return Buffer.concat([...this.#used, this.release()]);
  }

  #take(): Buffer {
    if (this.#chunks.length > 1) this.#chunks = [Buffer.concat(this.#chunks, this.#size)];
    return this.#chunks[0] ?? Buffer.alloc(0);
  }
}
