import type { Duplex } from 'node:stream';

/**
 * Sends `data` (if any), then closes the connection as soon as it is flushed. A plain `end()`
 * leaves the socket open until the peer closes its side too, and a paused socket never even sees
 * that: a client that never closes would hold it for ever.
 */
export function finish(socket: Duplex, data?: string | Buffer): void {
  if (socket.destroyed) return;
  if (!socket.writable) return void socket.destroy();
  socket.end(data ?? '', () => socket.destroy());
}
