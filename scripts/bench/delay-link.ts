// A link with latency, on loopback, for the proxy benchmark: a TCP relay in front of a port that
// delivers every chunk `oneWayMs` after it arrived, in order, in each direction. A new connection
// also pays for its TCP handshake as on a real link: the client's first bytes reach the far side
// no earlier than three one-way delays after it connected (SYN, SYN-ACK, then the data), since on
// loopback the handshake itself costs nothing. Only for small exchanges (no backpressure).
import { createServer, connect, type Server, type Socket } from 'node:net';
import { listen } from '../../src/net/listen.js';

function delayed(from: Socket, to: Socket, oneWayMs: number, notBefore: number): void {
  const queue: Array<{ at: number; chunk: Buffer }> = [];
  let timer: NodeJS.Timeout | undefined;
  let ended = false;
  const flush = () => {
    timer = undefined;
    const now = performance.now();
    while (queue.length && queue[0]!.at <= now + 0.25) to.write(queue.shift()!.chunk);
    if (queue.length) timer = setTimeout(flush, queue[0]!.at - now);
    else if (ended) to.end();
  };
  from.on('data', (chunk: Buffer) => {
    const at = Math.max(performance.now() + oneWayMs, notBefore, queue.at(-1)?.at ?? 0);
    queue.push({ at, chunk });
    timer ??= setTimeout(flush, at - performance.now());
  });
  from.on('end', () => {
    ended = true;
    if (!timer) flush();
  });
}

export async function delayLink(targetPort: number, oneWayMs: number): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const acceptedAt = performance.now();
    const far = connect(targetPort, '127.0.0.1');
    for (const s of [client, far]) {
      s.setNoDelay(true);
      sockets.add(s);
      s.on('error', () => s.destroy());
      s.once('close', () => {
        sockets.delete(s);
        client.destroy();
        far.destroy();
      });
    }
    delayed(client, far, oneWayMs, acceptedAt + 3 * oneWayMs);
    delayed(far, client, oneWayMs, 0);
  });
  const { port } = await listen(server, '127.0.0.1', 0);
  return {
    port,
    close: () => {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
