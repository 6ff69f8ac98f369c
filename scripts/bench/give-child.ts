// A give proxy in its own process for the proxy benchmark (memory is read from it after a GC).
// Env: TICKET_PUBLIC_KEY (PEM); GIVE_TLS=1 for the TLS port (else plaintext). Prints
// {"url", "identityKey"} when listening; SIGUSR2 prints memoryUsage after a GC.
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { PeerIdentity } from '../../src/crypto/peer-identity.js';
import { TicketVerifier } from '../../src/crypto/tickets.js';
import { GiveProxy } from '../../src/roles/give/give-proxy.js';

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
process.on('SIGUSR2', () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  console.log(JSON.stringify({ memory: process.memoryUsage(), cpu: process.cpuUsage(), stats: proxy.stats() }));
});
process.on('SIGTERM', () => void proxy.stop(0).then(() => process.exit(0)));
console.log(JSON.stringify({ url: proxy.url, identityKey: identity.publicKey }));
