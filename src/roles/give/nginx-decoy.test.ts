import { randomUUID } from 'node:crypto';
import test from 'ava';
import { systemClock } from '../../core/clock.js';
import { silentLogger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import { generateTicketKey, TicketIssuer, TicketVerifier } from '../../crypto/tickets.js';
import { ticketAuthorization } from '../../net/tunnel.js';
import { startReferenceNginx } from '../../testing/helpers/nginx.js';
import { probeCorpus, runProbe, timeToClose, type Probe } from '../../testing/helpers/probes.js';
import { requireTool } from '../../testing/helpers/required-tools.js';
import { tempDir } from '../../testing/helpers/temp-dir.js';
import { GiveProxy } from './give-proxy.js';

// Without a valid ticket a give peer is Debian's nginx 1.22 (server_tokens off, an empty root): a
// real nginx with that configuration and a give peer get the same corpus of censors' probes, and
// every answer must be the same, byte for byte but for Date, and end the same way. Timeouts are
// shortened on both sides (2 s / 3 s) so that their timing can be compared too.

const HEADER_S = 2;
const KEEPALIVE_S = 3;

async function setup(t: { teardown(fn: () => unknown): void }) {
  await requireTool('nginx');
  const dir = await tempDir('lantern-decoy-');
  t.teardown(() => dir.remove());
  const identity = new PeerIdentity();
  const tls = identity.tlsCredentials();
  const nginx = await startReferenceNginx(dir.path, tls, { headerTimeoutS: HEADER_S, keepaliveS: KEEPALIVE_S });
  t.teardown(() => nginx.stop());
  const key = generateTicketKey();
  const proxy = new GiveProxy(
    { tickets: new TicketVerifier(key.publicKeyPem), clock: systemClock, logger: silentLogger() },
    { host: '127.0.0.1', port: 0, allowPrivateDestinations: false, maxClients: 8, tls, limits: { handshakeTimeoutMs: HEADER_S * 1000, keepAliveTimeoutMs: KEEPALIVE_S * 1000 } },
  );
  await proxy.start();
  t.teardown(() => proxy.stop(0));
  // A real session's first packet, replayed after its ticket expired.
  const expired = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: randomUUID(), exp: Date.now() - 1000 });
  const replayed = `CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\nProxy-Authorization: ${ticketAuthorization(expired)}\r\n\r\n`;
  return { nginx, proxy, replayed };
}

test('every probe of the corpus gets the same answer from the give peer as from nginx', async (t) => {
  const { nginx, proxy, replayed } = await setup(t);
  const corpus = probeCorpus(replayed);
  t.true(corpus.length >= 40, `${corpus.length} probes`);
  const differ: Array<{ probe: string; nginx: unknown; give: unknown }> = [];
  for (const probe of corpus) {
    const [a, b] = await Promise.all([runProbe(nginx.port, probe), runProbe(proxy.address.port, probe)]);
    if (JSON.stringify(a) !== JSON.stringify(b)) differ.push({ probe: probe.name, nginx: a, give: b });
  }
  t.deepEqual(differ, [], `${differ.length} of ${corpus.length} probes answered differently`);
  t.log(`${corpus.length} probes, all answered identically`);
});

test('connections end when nginx ends them: idle, half a request, idle keep-alive, no TLS at all', async (t) => {
  const { nginx, proxy } = await setup(t);
  const cases: Probe[] = [
    { name: 'idle after the TLS handshake', over: 'tls' },
    { name: 'half a request line', over: 'tls', send: ['GET / HTTP/1.1'] },
    { name: 'idle after a 404', over: 'tls', send: ['GET / HTTP/1.1\r\nHost: x\r\n\r\n'] },
    { name: 'no byte on the TCP connection', over: 'plain' },
    { name: 'half a plain request', over: 'plain', send: ['GET / '] },
  ];
  for (const probe of cases) {
    const [a, b] = await Promise.all([timeToClose(nginx.port, probe, 6000), timeToClose(proxy.address.port, probe, 6000)]);
    const expected = (probe.name.includes('404') ? KEEPALIVE_S : HEADER_S) * 1000;
    t.truthy(a, `nginx closes: ${probe.name}`);
    t.truthy(b, `the give peer closes: ${probe.name}`);
    t.true(Math.abs(a! - expected) < 600, `nginx after ${a} ms (${probe.name})`);
    t.true(Math.abs(b! - a!) < 500, `${probe.name}: nginx after ${a} ms, the give peer after ${b} ms`);
  }
});

test('bytes that are no HTTP/2 preface after ALPN h2 end with the GOAWAY nginx sends (PROTOCOL_ERROR)', async (t) => {
  const { nginx, proxy } = await setup(t);
  const probe: Probe = { name: 'HTTP/1.1 on an h2 connection', over: 'tls', alpn: ['h2'], send: ['GET / HTTP/1.1\r\nHost: x\r\n\r\n'] };
  const [a, b] = await Promise.all([runProbe(nginx.port, probe), runProbe(proxy.address.port, probe)]);
  const frames = (answer: string) => Buffer.from(answer, 'latin1');
  const goaway = (bytes: Buffer) => bytes.subarray(bytes.length - 17);
  // SETTINGS first, as nginx's; then GOAWAY, last stream 0, PROTOCOL_ERROR (1).
  t.is(frames(b.answer).subarray(0, 27).toString('hex'), frames(a.answer).subarray(0, 27).toString('hex'));
  t.is(goaway(frames(a.answer)).toString('hex'), '0000080700000000000000000000000001');
  t.is(goaway(frames(b.answer)).toString('hex'), goaway(frames(a.answer)).toString('hex'));
  t.is(b.ended, a.ended);
});
