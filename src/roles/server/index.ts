import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import { stopAll, type Startable } from '../../core/lifecycle.js';
import type { Logger } from '../../core/logger.js';
import type { CanaryMaker } from '../../crypto/canary.js';
import { TicketVerifier, type TicketIssuer } from '../../crypto/tickets.js';
import type { CertificateAuthority } from '../../crypto/x509/certificate-authority.js';
import type { PeerjsDirectory } from '../../storage/peerjs-directory.js';
import type { Notifier, ServerStore } from '../../storage/server-store.js';
import { DnsServer, type DnsServerOptions } from './dns-server.js';
import { StunServer, type StunServerOptions } from './stun-server.js';
import { currentPeers } from './peer-admission.js';
import { LanternServer, type ListenOptions } from './lantern-server.js';
import { MetricsServer, ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';
import { PeerjsBroker, type PeerjsBrokerOptions } from './peerjs-broker.js';
import { RotationMonitor } from './rotation-monitor.js';

export interface ServerRoleComponents {
  store: ServerStore;
  notifier: Notifier;
  /** Several instances on Redis are one PeerJS broker: ids claimed there, frames over pub/sub. */
  peerjsDirectory?: PeerjsDirectory;
  clock: Clock;
  logger: Logger;
  ca: CertificateAuthority;
  tickets: TicketIssuer;
  canary: CanaryMaker;
  /** Where faults are contained (default: one that counts them in the metrics, by surface). */
  faults?: FaultBoundary;
  /** Keys the hash that names client networks in limit keys (the data dir's address-key). */
  addressKey?: Buffer;
}

export interface ServerRoleOptions {
  api: ServerOptions;
  listen: Omit<ListenOptions, 'attachments'>;
  /** The PeerJS broker on the API's listener; `requireAuth`: only holders of a PeerJS ticket register an id. */
  peerjs?: PeerjsBrokerOptions & { requireAuth: boolean };
  /** The round robin as DNS. */
  dns?: Omit<DnsServerOptions, 'maxAnswers' | 'snapshotMs'> & Partial<Pick<DnsServerOptions, 'maxAnswers' | 'snapshotMs'>>;
  /** STUN Binding answers over UDP (`--stun-listen`), for ICE. */
  stun?: StunServerOptions;
  /** Prometheus metrics on a listener of their own, with an optional bearer token. */
  metrics?: { host: string; port: number; token?: string };
  /** Warn when fewer verified peers than this are in the round robin. */
  minRotation: number;
}

export type ServerEvent =
  | { event: 'dns-listening'; host: string; port: number; zone: string }
  | { event: 'stun-listening'; host: string; port: number }
  | { event: 'metrics-listening'; url: string }
  | { event: 'listening'; url: string; peerjs: string | null };

/**
 * The server role: the API (with the PeerJS broker on its listener), the rotation monitor, and
 * when asked the DNS round robin and the metrics listener, all under one fault boundary whose
 * faults are counted by surface. Started in that order; a part that fails to start undoes those
 * before it (LA_ERR_CONFIG naming it); stopped in the reverse order.
 */
export class ServerRole implements Startable {
  readonly metrics = new ServerMetrics();
  readonly faults: FaultBoundary;
  readonly api: LanternServer;
  readonly broker: PeerjsBroker | undefined;
  readonly #c: ServerRoleComponents;
  readonly #o: ServerRoleOptions;
  readonly #onEvent: (e: ServerEvent) => void;
  readonly #started: Array<{ stop(): Promise<void> }> = [];
  /** The DNS server, once started (when asked for). */
  dns: DnsServer | undefined;
  /** The STUN server, once started (when asked for). */
  stun: StunServer | undefined;

  constructor(components: ServerRoleComponents & { onEvent?: (e: ServerEvent) => void }, options: ServerRoleOptions) {
    this.#c = components;
    this.#onEvent = components.onEvent ?? (() => undefined);
    // Clients are told the STUN listener's address once it is known (port 0 picks one at start).
    options = { ...options, api: { ...options.api, ice: { ...options.api.ice, stunListen: () => this.stun?.address } } };
    this.#o = options;
    const { logger, clock, store, notifier } = components;
    this.faults = components.faults ?? new FaultBoundary({ logger, onFault: (surface) => this.metrics.faults.inc({ surface }) });
    this.broker = options.peerjs
      ? new PeerjsBroker(
          {
            logger: logger.child({ component: 'peerjs' }),
            clock,
            faults: this.faults,
            ...(components.peerjsDirectory ? { cluster: { notifier, directory: components.peerjsDirectory } } : {}),
          },
          { ...options.peerjs, ...(options.peerjs.requireAuth ? { checkToken: ticketChecker(components.tickets.publicKeyPem, clock) } : {}) },
        )
      : undefined;
    this.#rotation = new RotationMonitor(
      { store, clock, logger: logger.child({ component: 'rotation' }), metrics: this.metrics, faults: this.faults },
      { minRotation: options.minRotation, checkEveryMs: 5000, repeatWarningMs: 60_000, verdictTtlMs: options.api.verdictTtlMs, verifierQuorum: options.api.verifierQuorum },
    );
    this.api = new LanternServer(
      { ...components, logger: logger.child({ component: 'server' }), metrics: this.metrics, faults: this.faults, onVerdict: (peer) => this.#rotation.verdict(peer) },
      options.api,
      { ...options.listen, attachments: this.broker ? [this.broker] : [] },
    );
    this.metrics.observe({ heldPolls: () => this.api.heldPolls, queuedMessages: () => store.queuedMessages(), ...(this.broker ? { broker: this.broker } : {}) });
  }

  readonly #rotation: RotationMonitor;

  get url(): string {
    return this.api.url;
  }

  async start(): Promise<void> {
    const { host, port } = this.#o.listen;
    await this.#part(`the API on ${host}:${port}`, this.api);
    await this.#part('the rotation monitor', this.#rotation);
    const { dns, metrics, stun } = this.#o;
    if (stun) {
      const server = new StunServer({ clock: this.#c.clock, logger: this.#c.logger.child({ component: 'stun' }), faults: this.faults, onAnswer: () => this.metrics.stunAnswers.inc() }, stun);
      await this.#part(`STUN on ${stun.host}:${stun.port}`, server);
      this.stun = server;
      this.#onEvent({ event: 'stun-listening', ...server.address });
    }
    if (dns) {
      const server = new DnsServer(
        {
          store: currentPeers(this.#c.store, this.#o.api),
          clock: this.#c.clock,
          logger: this.#c.logger.child({ component: 'dns' }),
          faults: this.faults,
          onAnswer: (rcode) => this.metrics.dnsAnswers.inc({ rcode }),
          onLimited: (outcome) => this.metrics.dnsRateLimited.inc({ outcome }),
        },
        { maxAnswers: 16, snapshotMs: 1000, ...dns },
      );
      await this.#part(`DNS on ${dns.host}:${dns.port}`, server);
      this.dns = server;
      this.#onEvent({ event: 'dns-listening', ...server.address, zone: dns.zone });
    }
    if (metrics) {
      const server = new MetricsServer(this.metrics, metrics, metrics.token, this.faults);
      await this.#part(`metrics on ${metrics.host}:${metrics.port}`, server);
      this.#onEvent({ event: 'metrics-listening', url: server.url });
    }
    this.#onEvent({ event: 'listening', url: this.api.url, peerjs: this.broker ? `${this.api.url.replace(/^http/, 'ws')}${this.#o.peerjs!.path}peerjs` : null });
  }

  /** Starts one part; if it fails, stops those started before it. */
  async #part(what: string, part: { start(): Promise<void>; stop(): Promise<void> }): Promise<void> {
    try {
      await part.start();
    } catch (err) {
      await stopAll(this.#started.splice(0));
      if (LanternError.is(err) && !err.code.startsWith('LA_ERR_ADDRESS_')) throw err;
      throw new LanternError(LanternError.is(err) ? err.code : 'LA_ERR_CONFIG', `Cannot start ${what}: ${(err as Error).message}`, { cause: err });
    }
    this.#started.push(part);
  }

  /** Stops every part, the last started first (the API answers its held polls). */
  async stop(): Promise<void> {
    await stopAll(this.#started.splice(0));
  }
}

/** PeerJS tokens checked as our tickets (`aud: peerjs`), offline. */
function ticketChecker(publicKeyPem: string, clock: Clock): (token: string) => boolean {
  const verifier = new TicketVerifier(publicKeyPem);
  return (token) => {
    try {
      verifier.verify(token, clock.now(), 'peerjs');
      return true;
    } catch {
      return false;
    }
  };
}

export function createServer(components: ServerRoleComponents & { onEvent?: (e: ServerEvent) => void }, options: ServerRoleOptions): ServerRole {
  return new ServerRole(components, options);
}
