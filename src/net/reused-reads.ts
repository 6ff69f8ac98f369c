import { connect, Socket, type NetConnectOpts } from 'node:net';
import { TLSSocket } from 'node:tls';

/**
 * Outgoing TCP connections whose reads land in reused buffers (Node's `onread` option) instead of a
 * fresh 64 KiB allocation per read: what a proxy's destination sockets carry, downloads above all;
 * and in a bulk transfer, reads of up to 256 KiB instead of 64.
 *
 * By default Node mallocs a new 64 KiB buffer for every read, wraps it in an ArrayBuffer and a
 * Buffer, and leaves it to the GC. For a relay that hands each chunk straight on, that is the
 * costliest part of the copy: measured on a bare relay (1 GiB downstream, loopback), 1.15 CPU-s/GiB
 * with fresh buffers against 0.85 with one reused buffer, in both user and system time (the kernel
 * copies into cache-hot memory rather than new pages).
 *
 * A reused buffer must not be read into again while a write still holds it, and a socket must not
 * hold 64 KiB while idle (a proxy holds thousands of idle tunnels). So:
 *  - a socket whose last read was short (idle, interactive) reads into one buffer shared by every
 *    such socket, and its chunk is copied out at once (small, as Node's own pool does);
 *  - a socket whose last read filled 64 KiB (a bulk transfer) reads into a 256 KiB buffer of its
 *    own from a pool, lent with the chunk: the consumer gives it back (`release`) once its write
 *    has flushed, and only then is it read into again. A read takes what the kernel holds, up to
 *    the buffer's size, so a fast transfer moves four times as much per read, per callback and per
 *    write as Node's 64 KiB (measured on the relay, 1 GiB each way on loopback: 0.82–0.97 CPU-s/GiB
 *    with 64 KiB buffers against 0.53–0.74 with 256 KiB). At most two buffers per transferring socket are
 *    out (the consumer stops reading while a write is pending), and the pool keeps a few. A
 *    socket that is paused (its sink is full, a budget waits) reads next into the shared buffer,
 *    so a stalled tunnel holds only the buffer its pending write holds; a closed one gives back
 *    the buffer it was to read into.
 *
 * A consumer attaches with `attachReader`; chunks read before that are kept (copied) and reading
 * stops until it attaches. A TCP or TLS socket not made here (an accepted one: what a client
 * uploads) is switched to reused reads when a consumer attaches (`adopt`), once its handshake has
 * been read through `data` events; a TLS socket's buffers are 16 KiB, a record's most. Any other
 * stream (an HTTP/2 stream) has no reader: consumers fall back to `data`.
 */

/** Bytes per read into the shared buffer: as Node's own for TCP. A read this long starts a bulk transfer. */
const READ_BYTES = 64 * 1024;
/** Bytes per read of a TCP socket in a bulk transfer. */
const BULK_READ_BYTES = 256 * 1024;
/** A TLS socket hands on one record a read: at most 16 KiB (RFC 8446 §5.1). */
const TLS_READ_BYTES = 16 * 1024;
/** Free buffers kept across sockets, per size (4 MiB each); more are left to the GC. */
const POOL_BYTES = 4 * 1024 * 1024;

const pools = new Map<number, Buffer[]>();
/** Buffers taken for sockets (to read into, or lent with a chunk) and not given back yet. */
let out = 0;
/** Where short reads land, for every socket: copied out before the read callback returns. */
const shared = Buffer.allocUnsafeSlow(READ_BYTES);

function takeBuffer(size: number): Buffer {
  out++;
  return pools.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
}

function giveBack(buffer: Buffer): void {
  out--;
  let pool = pools.get(buffer.length);
  if (!pool) pools.set(buffer.length, (pool = []));
  if (pool.length < POOL_BYTES / buffer.length) pool.push(buffer);
}

/** Whether a socket's reads land in reused buffers (made by connectReusingReads, or adopted): for tests. */
export function readsReused(socket: Socket): boolean {
  return readers.has(socket);
}

/** How many read buffers sockets hold now (each 256 KiB, or 16 KiB for TLS): for tests and memory accounting. */
export function readBuffersOut(): number {
  return out;
}

/**
 * Takes each chunk. `release` is set when the chunk is a lent buffer: call it once nothing holds
 * the chunk any more (its write has flushed or failed), never before; a chunk without it is the
 * consumer's own. Stop and restart reading with the socket's `pause()` and `resume()`.
 */
export type ChunkHandler = (chunk: Buffer, release: (() => void) | undefined) => void;

class Reader {
  /** The size of the buffers a bulk transfer reads into. */
  readonly #bulkBytes: number;
  /** A read this long means the socket is transferring in bulk. */
  readonly #bulkAt: number;
  #handler: ChunkHandler | undefined;
  #early: Buffer[] = [];
  #bulk = false;
  /** The buffer the next read lands in. */
  #current: Buffer = shared;
  socket: Socket | undefined;

  constructor(bulkBytes = BULK_READ_BYTES) {
    this.#bulkBytes = bulkBytes;
    this.#bulkAt = Math.min(bulkBytes, READ_BYTES);
  }

  /**
   * The buffer for the next read: Node asks right after each read (and once at connect). A pool
   * buffer only while a bulk transfer flows: not for a socket that is stopped (no consumer yet,
   * or paused by it), whose next read may be long in coming.
   */
  next = (): Buffer => {
    this.#current = this.#bulk && this.#handler && !this.socket!.isPaused() ? takeBuffer(this.#bulkBytes) : shared;
    return this.#current;
  };

  /** The socket closed: the buffer it was to read into goes back to the pool. */
  closed = (): void => {
    if (this.#current !== shared) giveBack(this.#current);
    this.#current = shared;
  };

  read = (n: number, buffer: Buffer): boolean => {
    this.#bulk = n >= this.#bulkAt;
    const lent = buffer !== shared;
    if (!this.#handler) {
      this.keep(Buffer.from(buffer.subarray(0, n)));
      if (lent) giveBack(buffer);
      // Stopped until a consumer attaches (it resumes the socket).
      return false;
    }
    if (!lent) this.#handler(Buffer.from(shared.subarray(0, n)), undefined);
    else this.#handler(buffer.subarray(0, n), once(() => giveBack(buffer)));
    return true;
  };

  /** A chunk read before the consumer attached (the consumer's own, handed on at `attach`). */
  keep(chunk: Buffer): void {
    this.#early.push(chunk);
  }

  attach(handler: ChunkHandler): void {
    this.#handler = handler;
    for (const chunk of this.#early.splice(0)) handler(chunk, undefined);
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

const readers = new WeakMap<Socket, Reader>();

/**
 * Node's `onread` is an option of the Socket constructor only, and a server makes the sockets it
 * accepts itself. The constructor keeps the option in three symbol-keyed fields, which its read
 * path (`onStreamRead`) and `pause`/`resume` consult; the handle is switched with its
 * `useUserBuffer`. Found by their descriptions on a socket made with the option: if a Node version
 * names them otherwise, sockets are not adopted and consumers keep using `data` (slower, correct).
 */
interface OnreadFields {
  buffer: symbol;
  generate: symbol;
  callback: symbol;
}
let onreadFields: OnreadFields | null | undefined;

function findOnreadFields(): OnreadFields | null {
  const probe = new Socket({ onread: { buffer: () => shared, callback: () => true } } as ConstructorParameters<typeof Socket>[0]);
  const symbols = Object.getOwnPropertySymbols(probe);
  const named = (description: string) => symbols.find((s) => s.description === description && (probe as unknown as Record<symbol, unknown>)[s] !== undefined);
  const buffer = named('kBuffer');
  const generate = named('kBufferGen');
  const callback = named('kBufferCb');
  probe.destroy();
  return buffer && generate && callback ? { buffer, generate, callback } : null;
}

interface UserBufferHandle {
  useUserBuffer(buffer: Uint8Array): void;
}

/**
 * Switches a connected TCP or TLS socket (one that reads into Node's fresh buffers) to reused
 * reads. What it has read and not handed on yet is kept, ahead of what it reads next. Undefined
 * when the socket is not such a socket (already switched, not connected, gone, no handle that
 * takes a user buffer) or Node's fields are not found.
 */
function adopt(socket: Socket): Reader | undefined {
  if (!(socket instanceof Socket) || socket.destroyed || socket.connecting) return undefined;
  const handle = (socket as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
  if (typeof handle?.useUserBuffer !== 'function') return undefined;
  if (onreadFields === undefined) onreadFields = findOnreadFields();
  const fields = onreadFields;
  const own = socket as unknown as Record<symbol, unknown>;
  if (!fields || own[fields.buffer]) return undefined;
  const reader = new Reader(socket instanceof TLSSocket ? TLS_READ_BYTES : BULK_READ_BYTES);
  reader.socket = socket;
  const first = reader.next();
  own[fields.buffer] = first;
  own[fields.generate] = reader.next;
  own[fields.callback] = reader.read;
  handle.useUserBuffer(first);
  // Bytes Node read before the switch (a socket keeps reading while its consumer is paused) come first.
  for (let chunk: Buffer | null; (chunk = socket.read() as Buffer | null) !== null; ) reader.keep(chunk);
  socket.once('close', reader.closed);
  readers.set(socket, reader);
  return reader;
}

/** `net.connect` with reused read buffers: attach a consumer with `attachReader` (no `data` events). */
export function connectReusingReads(options: NetConnectOpts): Socket {
  const reader = new Reader();
  const socket = connect({ ...options, onread: { buffer: reader.next, callback: reader.read } } as NetConnectOpts);
  reader.socket = socket;
  socket.once('close', reader.closed);
  readers.set(socket, reader);
  return socket;
}

/**
 * Attaches `handler` to a socket made by connectReusingReads, or to a TCP or TLS socket, switched
 * to reused reads now (`adopt`): from here on its reads come only to `handler`, no `data` events.
 * False for any other stream (use `data`).
 */
export function attachReader(stream: object, handler: ChunkHandler): boolean {
  const reader = readers.get(stream as Socket) ?? adopt(stream as Socket);
  if (!reader) return false;
  reader.attach(handler);
  return true;
}
