// A get client in its own process for the side-by-side proxy benchmark: its local proxy (HTTP
// CONNECT, HTTP forward, SOCKS5) carries every connection through one TLS give peer, as it would
// through a peer from the server's round robin. The server is stood in for: the round robin is that
// one peer, and tickets are issued here. Env: GIVE_PORT, GIVE_IDENTITY_KEY, TICKET_PRIVATE_KEY (PEM).
// Prints {"url"} when listening; SIGUSR2 runs a full GC.
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { growHeapInLargeSteps, keepFreedHeap } from '../../src/core/malloc-tuning.js';
import { TicketIssuer } from '../../src/crypto/tickets.js';
import type { RoundRobinPeer } from '../../src/protocol/messages.js';
import { createGet } from '../../src/roles/get/index.js';

// As the CLI does at startup (and give and get when they start), so that the benchmark measures what ships.
keepFreedHeap();
growHeapInLargeSteps();

const issuer = new TicketIssuer(process.env['TICKET_PRIVATE_KEY']!);
const peer: RoundRobinPeer = { host: '127.0.0.1', port: Number(process.env['GIVE_PORT']), protocols: ['connect'], identityKey: process.env['GIVE_IDENTITY_KEY']! };
const get = createGet(
  {
    api: {
      roundRobin: async () => [peer],
      ticket: async () => {
        const expiresAt = Date.now() + 3600_000;
        return { ticket: issuer.issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: expiresAt }), expiresAt };
      },
      // No messages: the poll is held until get stops.
      poll: (_wait, _limit, signal) => new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true })),
      ack: async () => undefined,
    },
    clock: systemClock,
    logger: silentLogger(),
    ads: async () => [],
    receive: async () => [],
  },
  // Every connection comes from 127.0.0.1, as the references' are: no connection cap.
  { host: '127.0.0.1', port: 0, refreshMs: 600_000, maxConnections: 0 },
);
await get.start();
process.on('SIGTERM', () => void get.stop().then(() => process.exit(0)));
console.log(JSON.stringify({ url: get.url }));
// A full GC before the benchmark reads memory (the child runs with --expose-gc).
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
});
