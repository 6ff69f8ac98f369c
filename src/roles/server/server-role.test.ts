import { randomBytes } from 'node:crypto';
import test from 'ava';
import { systemClock } from '../../core/clock.js';
import { silentLogger } from '../../core/logger.js';
import { CanaryMaker } from '../../crypto/canary.js';
import { generateTicketKey, TicketIssuer } from '../../crypto/tickets.js';
import { CertificateAuthority } from '../../crypto/x509/certificate-authority.js';
import { MemoryNotifier } from '../../storage/memory-notifier.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import { createServer, type ServerEvent } from './index.js';
import { defaultServerOptions } from './options.js';
import { defaultPeerjsOptions } from './peerjs-broker.js';

async function components() {
  const store = new MemoryServerStore();
  await store.open();
  return {
    store,
    notifier: new MemoryNotifier(),
    clock: systemClock,
    logger: silentLogger(),
    ca: new CertificateAuthority(await CertificateAuthority.create()),
    tickets: new TicketIssuer(generateTicketKey().privateKeyPem),
    canary: new CanaryMaker(randomBytes(32)),
  };
}

test('the server role starts the API, the broker, DNS and metrics, reports where, and stops them all', async (t) => {
  const events: ServerEvent[] = [];
  const server = createServer(
    { ...(await components()), onEvent: (e) => events.push(e) },
    {
      api: defaultServerOptions,
      listen: { host: '127.0.0.1', port: 0 },
      peerjs: { ...defaultPeerjsOptions, path: '/signal/', requireAuth: false },
      dns: { host: '127.0.0.1', port: 0, zone: 'lantern.test', ttlSeconds: 30, ratePerSecond: 0 },
      metrics: { host: '127.0.0.1', port: 0 },
      minRotation: 0,
    },
  );
  await server.start();
  t.deepEqual(events.map((e) => e.event), ['dns-listening', 'metrics-listening', 'listening']);
  const listening = events.at(-1) as Extract<ServerEvent, { event: 'listening' }>;
  t.is(listening.peerjs, `${server.url.replace(/^http/, 'ws')}/signal/peerjs`);
  t.is((await fetch(`${server.url}/v1/health`)).status, 200);
  const metricsUrl = (events[1] as Extract<ServerEvent, { event: 'metrics-listening' }>).url;
  t.regex(await (await fetch(metricsUrl)).text(), /lantern_long_polls_held 0/);
  await server.stop();
  await t.throwsAsync(fetch(`${server.url}/v1/health`));
  await t.throwsAsync(fetch(metricsUrl));
});

test('a part that cannot start undoes the parts before it, with an error naming it (here LA_ERR_ADDRESS_UNAVAILABLE)', async (t) => {
  const server = createServer(await components(), {
    api: defaultServerOptions,
    listen: { host: '127.0.0.1', port: 0 },
    // Not an address of this machine: the DNS listener cannot bind.
    dns: { host: '192.0.2.1', port: 0, zone: 'lantern.test', ttlSeconds: 30, ratePerSecond: 0 },
    minRotation: 0,
  });
  const err = await t.throwsAsync(server.start(), { code: 'LA_ERR_ADDRESS_UNAVAILABLE' });
  t.regex(err!.message, /Cannot start DNS on 192\.0\.2\.1:0: .*no network interface of this machine has the address 192\.0\.2\.1/);
  await t.throwsAsync(fetch(`${server.api.url}/v1/health`), undefined, 'the API was stopped again');
});
