// A give proxy in its own process for the proxy benchmark (memory is read from it after a GC).
// Env: TICKET_PUBLIC_KEY (PEM); GIVE_TLS=1 for the TLS port (else plaintext); GIVE_ICE=1 to take
// WebRTC offers too: {"signal"} lines on stdin (from the client), {"signal"} lines on stdout (to it),
// standing for the end-to-end encrypted messages. Prints {"url", "identityKey"} when listening;
// SIGUSR2 prints memoryUsage after a GC.
import { createInterface } from 'node:readline';
import nodeDataChannel from 'node-datachannel';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { growHeapInLargeSteps, keepFreedHeap } from '../../src/core/malloc-tuning.js';
import { PeerIdentity } from '../../src/crypto/peer-identity.js';
import { TicketVerifier } from '../../src/crypto/tickets.js';
import { IceListener } from '../../src/net/ice/ice-listener.js';
import { GiveProxy } from '../../src/roles/give/give-proxy.js';

// As the CLI does at startup (and give and get when they start), so that the benchmark measures what ships.
keepFreedHeap();
growHeapInLargeSteps();

const identity = new PeerIdentity();
const proxy = new GiveProxy(
  { tickets: new TicketVerifier(process.env['TICKET_PUBLIC_KEY']!), clock: systemClock, logger: silentLogger() },
  // Every connection comes from 127.0.0.1: the connection caps are off.
  {
    host: '127.0.0.1',
    port: 0,
    allowPrivateDestinations: true,
    maxClients: 100_000,
    limits: { maxConnections: 0, maxConnectionsPerAddress: 0 },
    ...(process.env['GIVE_TLS'] === '1' ? { tls: identity.tlsCredentials() } : {}),
  },
);
await proxy.start();
const client = { userId: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', deviceId: 1 };
const ice =
  process.env['GIVE_ICE'] === '1'
    ? new IceListener(
        {
          signaling: { send: async (_to, signal) => void console.log(JSON.stringify({ signal })) },
          iceServers: async () => [],
          identity,
          logger: silentLogger(),
          ticketOk: (ticket) => proxy.ticketOk(ticket),
          paused: () => false,
          serve: (request, stream, answer) => proxy.serveTunnel(stream, request, { accept: answer.accept, fail: answer.refuse }),
        },
        { bindAddress: '127.0.0.1' },
      )
    : undefined;
if (ice) createInterface({ input: process.stdin }).on('line', (line) => void ice.handle(client, (JSON.parse(line) as { signal: Parameters<IceListener['handle']>[1] }).signal));
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  console.log(JSON.stringify({ memory: process.memoryUsage(), cpu: process.cpuUsage(), stats: proxy.stats() }));
});
process.on('SIGTERM', () => {
  ice?.close();
  void proxy.stop(0).then(() => {
    if (ice) nodeDataChannel.cleanup();
    process.exit(0);
  });
});
console.log(JSON.stringify({ url: proxy.url, identityKey: identity.publicKey }));
