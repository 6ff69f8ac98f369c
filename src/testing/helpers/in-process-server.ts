import { randomBytes } from 'node:crypto';
import { systemClock } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import { CanaryMaker } from '../../crypto/canary.js';
import { RequestSigner } from '../../crypto/request-signature.js';
import { generateTicketKey, TicketIssuer } from '../../crypto/tickets.js';
import { CertificateAuthority, type CaMaterial } from '../../crypto/x509/certificate-authority.js';
import { createCsr, describeCertificate, generateDeviceKey } from '../../crypto/x509/device-key.js';
import type { DnsServer } from '../../roles/server/dns-server.js';
import { createServer } from '../../roles/server/index.js';
import { defaultListenerLimits, type LanternServer, type ListenerLimits } from '../../roles/server/lantern-server.js';
import { defaultServerOptions, type ServerOptions } from '../../roles/server/options.js';
import { defaultPeerjsOptions, type PeerjsBroker, type PeerjsBrokerOptions } from '../../roles/server/peerjs-broker.js';
import { LoginResponse } from '../../protocol/messages.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../protocol/version.js';
import { MemoryNotifier } from '../../storage/memory-notifier.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import { tempDir } from './temp-dir.js';

let ca: Promise<CaMaterial> | undefined;

export interface InProcessServer {
  server: LanternServer;
  broker: PeerjsBroker;
  dns: DnsServer;
  store: MemoryServerStore;
  faults: FaultBoundary;
  url: string;
  controlPath: string;
  /** Logs in a new account and returns a signer for its device (LA1). */
  device(name: string): Promise<{ userId: string; deviceId: number; signer: RequestSigner }>;
  /** A signed request with any body (bytes as given), for fuzzing. */
  signed(device: { signer: RequestSigner }, method: string, path: string, body?: Buffer | string): Promise<{ status: number; text: string }>;
  stop(): Promise<void>;
}

/**
 * The server role in this process (memory store, PeerJS broker, DNS on loopback, control socket)
 * on port 0, for fault-injection and fuzz tests: a fault that escaped a boundary would end the
 * test process itself.
 */
export async function startInProcessServer(
  options: {
    faults?: FaultBoundary;
    logger?: Logger;
    limits?: Partial<ListenerLimits>;
    server?: Partial<ServerOptions>;
    peerjs?: Partial<PeerjsBrokerOptions>;
  } = {},
): Promise<InProcessServer> {
  const logger = options.logger ?? silentLogger();
  const faults = options.faults ?? new FaultBoundary({ logger });
  const dir = await tempDir('lantern-inproc-');
  const store = new MemoryServerStore();
  await store.open();
  const notifier = new MemoryNotifier();
  ca ??= CertificateAuthority.create();
  const authority = new CertificateAuthority(await ca);
  const controlPath = `${dir.path}/control.sock`;
  // The server role as `lantern-agent server` builds it (createServer), on a memory store.
  const role = createServer(
    { store, notifier, clock: systemClock, logger, ca: authority, tickets: new TicketIssuer(generateTicketKey().privateKeyPem), canary: new CanaryMaker(randomBytes(32)), faults },
    {
      api: { ...defaultServerOptions, openRegistration: true, ...options.server },
      listen: { host: '127.0.0.1', port: 0, controlSocketPath: controlPath, limits: { ...defaultListenerLimits, ...options.limits } },
      peerjs: { ...defaultPeerjsOptions, requireAuth: false, ...options.peerjs },
      dns: { host: '127.0.0.1', port: 0, zone: 'lantern.test', ttlSeconds: 30, maxAnswers: 8, ratePerSecond: 0 },
      minRotation: 0,
    },
  );
  await role.start();
  const [server, broker, dns] = [role.api, role.broker!, role.dns!];
  const url = server.url;
  const signed: InProcessServer['signed'] = async (device, method, path, body = '') => {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    const res = await fetch(`${url}${path}`, {
      method,
      headers: {
        [VERSION_HEADER]: String(PROTOCOL_VERSION),
        authorization: device.signer.authorize(method, path, bytes, Date.now()),
        ...(bytes.length ? { 'content-type': 'application/json' } : {}),
      },
      ...(method === 'GET' || method === 'HEAD' ? {} : { body: bytes }),
    });
    return { status: res.status, text: await res.text() };
  };
  return {
    server,
    broker,
    dns,
    store,
    faults,
    url,
    controlPath,
    signed,
    async device(name) {
      const key = await generateDeviceKey();
      const res = await fetch(`${url}/v1/login`, {
        method: 'POST',
        headers: { [VERSION_HEADER]: String(PROTOCOL_VERSION), 'content-type': 'application/json' },
        body: JSON.stringify({ user: name, password: 'correct horse battery', csr: createCsr(key), register: true }),
      });
      if (res.status !== 200) throw new Error(`login of ${name}: ${res.status} ${await res.text()}`);
      const login = LoginResponse.parse(await res.json());
      const { serial } = describeCertificate(login.certificate);
      return { userId: login.userId, deviceId: login.deviceId, signer: new RequestSigner({ userId: login.userId, deviceId: login.deviceId, serial, privateKeyPem: key.privateKeyPem }) };
    },
    async stop() {
      await role.stop();
      await store.close();
      await dir.remove();
    },
  };
}
