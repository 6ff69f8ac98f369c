// Many give proxies in one process, for the verify benchmark. Env: TICKET_PUBLIC_KEY (PEM), COUNT.
// Prints {"proxies": [{port, identityKey}]} when all listen. Reads commands on stdin, one JSON per line:
// {"peerId": ID, "port": P} (the registration of the proxy on P), {"kill": P} (stop that proxy at once).
import { createInterface } from 'node:readline';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { PeerIdentity } from '../../src/crypto/peer-identity.js';
import { TicketVerifier } from '../../src/crypto/tickets.js';
import { GiveProxy } from '../../src/roles/give/give-proxy.js';

const tickets = new TicketVerifier(process.env['TICKET_PUBLIC_KEY']!);
const count = Number(process.env['COUNT'] ?? 250);
const fleet = new Map<number, { proxy: GiveProxy; identity: PeerIdentity; peerId?: string }>();
for (let i = 0; i < count; i++) {
  const identity = new PeerIdentity();
  const entry: { proxy?: GiveProxy; identity: PeerIdentity; peerId?: string } = { identity };
  const proxy = new GiveProxy(
    { tickets, clock: systemClock, logger: silentLogger() },
    {
      host: '127.0.0.1',
      port: 0,
      allowPrivateDestinations: true,
      maxClients: 64,
      tls: identity.tlsCredentials(),
    },
  );
  await proxy.start();
  entry.proxy = proxy;
  fleet.set(proxy.address.port, entry as { proxy: GiveProxy; identity: PeerIdentity; peerId?: string });
}
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as { peerId?: string; port?: number; kill?: number };
  if (cmd.peerId && cmd.port) fleet.get(cmd.port)!.peerId = cmd.peerId;
  if (cmd.kill) void fleet.get(cmd.kill)?.proxy.stop(0);
});
process.on('SIGTERM', () => process.exit(0));
console.log(JSON.stringify({ proxies: [...fleet].map(([port, e]) => ({ port, identityKey: e.identity.publicKey })) }));
