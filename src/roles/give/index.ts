import type { Clock } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Startable } from '../../core/lifecycle.js';
import type { Logger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import { TicketVerifier } from '../../crypto/tickets.js';
import type { ReceivedMessage } from '../../messaging/inbox.js';
import { receiveLoop } from '../../messaging/receive-loop.js';
import { IceListener, type IceListenerStats } from '../../net/ice/ice-listener.js';
import type { IceSignaling } from '../../net/ice/ice-tunnels.js';
import { parseHostPort } from '../../net/listen.js';
import type { ApiClient } from '../../net/api-client.js';
import { PortMapper, type PortMappingChoice, type PortMappingStatus } from '../../net/port-mapping/index.js';
import type { Address, Advertisement, PeerInfo, PollResponse, ReachabilityResponse } from '../../protocol/messages.js';
import { GiveProxy, type GiveProxyOptions } from './give-proxy.js';
import { PeerRegistrar, type RegistrationApi } from './peer-registration.js';

/** What a give peer asks of the server: its registration, and whether the world reaches it. */
export type GiveApi = RegistrationApi & Partial<Pick<ApiClient, 'checkReachability' | 'iceServers' | 'ack' | 'takeKeysLow'>> & {
  poll?(waitSeconds: number, limit: number, signal: AbortSignal, ack: readonly string[]): Promise<PollResponse | undefined>;
};

/** Ads sent, and to whom they could not be. */
export interface AdReport {
  sentTo: string[];
  failed: Array<{ userId: string; code: string }>;
}

export interface GiveComponents {
  api: GiveApi;
  clock: Clock;
  logger: Logger;
  faults?: FaultBoundary;
  /** The server's ticket key (PEM): tickets are checked offline against it. */
  ticketKey: string;
  /** The identity key the TLS certificate carries (default: a fresh one). */
  identity?: PeerIdentity;
  /** Sends an availability ad to each user, end-to-end encrypted (the caller's keystore and messenger). */
  advertise?(ad: Advertisement, userIds: readonly string[]): Promise<AdReport>;
  /** `listening`, `registered` and `advertised`, as they happen in start(). */
  onEvent?(event: GiveEvent): void;
  /**
   * WebRTC for a peer no client can dial (behind a NAT no port could be mapped on): ICE signaling
   * sent end-to-end encrypted, and the receive loop's batches decrypted and stored (the caller's
   * keystore). Without them such a peer stays unreachable.
   */
  signaling?: IceSignaling;
  /** This device (where the offers of contacts who hold an ad go). */
  self?: Address;
  receive?(batch: PollResponse): Promise<ReceivedMessage[]>;
  topUpKeys?(): Promise<void>;
}

/** `changed`: the server's view of this peer changed (a verdict, or registered again), as it happened. */
export type GiveEvent =
  | { event: 'listening' }
  | { event: 'registered'; registration: PeerInfo }
  | { event: 'changed'; registration: PeerInfo }
  | { event: 'reachability'; reachability: ReachabilityResponse }
  | { event: 'port-mapping'; portMapping: PortMappingStatus }
  | { event: 'ice'; ice: IceStatus }
  | { event: 'advertised'; report: AdReport };

export interface GiveOptions extends Omit<GiveProxyOptions, 'tls'> {
  /** No TLS on the port (local tests only). */
  plaintext: boolean;
  sniName?: string;
  /** Keep a registration with the server (the verified round robin). */
  register: boolean;
  /** The port the world reaches the proxy on (a router's forward), if not the listening one. */
  publicPort?: number;
  /** HOST:PORT the world reaches the proxy at, a hint to the server and the address of ads. */
  publicAddr?: string;
  /** Users who get an availability ad at start. */
  advertiseTo: readonly string[];
  adLifetimeMs: number;
  /**
   * Open the port on the home router (UPnP-IGD, PCP/NAT-PMP) and register the router's public
   * port; not when --public-port says a forward exists. Undefined: no mapping.
   */
  portMapping?: { method: PortMappingChoice; leaseSeconds: number; gateway?: string };
  /**
   * Clients reach this peer over WebRTC: `auto` when the server could not reach it and no port is
   * mapped, `always` from the start, `off` never. Default `auto`.
   */
  ice?: 'auto' | 'always' | 'off';
  /** WebRTC candidates only on this local address (tests on loopback). */
  iceBindAddress?: string;
}

/** Whether clients reach this peer over WebRTC, and how its connections run. */
export type IceStatus = { enabled: true; reason: 'always' | 'unreachable' } & IceListenerStats;

const PROTOCOLS: Array<'connect' | 'http' | 'socks5'> = ['connect', 'http', 'socks5'];

/**
 * The give role: the proxy (TLS pinned to a fresh identity key unless plaintext), its registration
 * kept alive with the server, and availability ads to contacts. Pausing leaves the registry and
 * hands ticket holders the decoy; stopping leaves the registry first, then drains the tunnels.
 */
export class GivePeer implements Startable {
  readonly #c: GiveComponents;
  readonly #o: GiveOptions;
  readonly #identity: PeerIdentity;
  readonly #proxy: GiveProxy;
  readonly #registrar: PeerRegistrar;
  #reachability: ReachabilityResponse | undefined;
  #mapper: PortMapper | undefined;
  #ice: { listener: IceListener; reason: IceStatus['reason']; abort: AbortController; receiving: Promise<void> } | undefined;

  constructor(components: GiveComponents, options: GiveOptions) {
    const faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#c = { ...components, faults };
    this.#o = options;
    const identity = (this.#identity = components.identity ?? new PeerIdentity());
    const { plaintext, sniName, register: _register, publicPort: _port, publicAddr: _addr, advertiseTo: _to, adLifetimeMs: _life, portMapping: _mapping, ice: _ice, iceBindAddress: _bind, ...proxyOptions } = options;
    this.#proxy = new GiveProxy(
      { tickets: new TicketVerifier(components.ticketKey, { peer: identity.fingerprint }), clock: components.clock, logger: components.logger, faults },
      { ...proxyOptions, ...(plaintext ? {} : { tls: identity.tlsCredentials(sniName ? { name: sniName } : {}) }) },
    );
    this.#registrar = new PeerRegistrar(
      { api: components.api, clock: components.clock, logger: components.logger, faults, onChange: (registration) => components.onEvent?.({ event: 'changed', registration }) },
      {
        port: options.publicPort ?? 1, // the listening port is set at start, once it is known
        protocols: PROTOCOLS,
        identityKey: identity.publicKey,
        ...(plaintext ? { plaintext: true } : {}),
        ...(sniName ? { sniName } : {}),
        ...(options.publicAddr ? { publicAddr: options.publicAddr } : {}),
      },
    );
  }

  get url(): string {
    return this.#proxy.url;
  }

  /** How clients know this peer: the identity they pin, and how it speaks. */
  get peer(): { fingerprint: string; identityKey: string; tls: boolean; sniName?: string } {
    return { fingerprint: this.#identity.fingerprint, identityKey: this.#identity.publicKey, tls: !this.#o.plaintext, ...(this.#o.sniName ? { sniName: this.#o.sniName } : {}) };
  }

  get registration(): PeerInfo | undefined {
    return this.#registrar.info;
  }

  async start(): Promise<void> {
    await this.#proxy.start();
    try {
      this.#c.onEvent?.({ event: 'listening' });
      const port = (await this.#mapPort()) ?? this.#o.publicPort ?? this.#proxy.address.port;
      if (this.#o.ice === 'always') this.#startIce('always');
      if (this.#o.register) {
        await this.#registrar.start(port);
        this.#c.onEvent?.({ event: 'registered', registration: this.#registrar.info! });
        void this.checkReachability().then((r) => {
          // Nobody can dial this peer, and no router forward helped: clients come over WebRTC. Not when
          // a forward was made by hand (--public-port), nor when something else answers at the address
          // (another proxy, another key): that is a forward to fix, not a NAT to get through.
          const blocked = r && !r.reachable && ['refused', 'timeout', 'unreachable'].includes(r.status);
          if (blocked && !this.#mapper?.mapping && this.#o.publicPort === undefined && (this.#o.ice ?? 'auto') === 'auto' && !this.#o.plaintext) this.#startIce('unreachable');
        });
      }
      if (this.#o.advertiseTo.length && this.#c.advertise) {
        const report = await this.#c.advertise(this.ad(), this.#o.advertiseTo);
        this.#c.onEvent?.({ event: 'advertised', report });
      }
    } catch (err) {
      // Nothing is left running: out of the registry if it got in, and the port closed.
      if (this.#registrar.info) await this.#registrar.stop();
      await this.#mapper?.stop();
      await this.#proxy.stop(0);
      throw err;
    }
  }

  /**
   * Maps the listening port on the home router, unless a forward exists (--public-port) or mapping
   * is off; the external port to register, if mapped. A mapping that moves later (the router
   * restarted and gave another port) is registered again.
   */
  async #mapPort(): Promise<number | undefined> {
    const mapping = this.#o.portMapping;
    if (!mapping || this.#o.publicPort !== undefined) return undefined;
    const { host, port } = this.#proxy.address;
    this.#mapper = new PortMapper(
      {
        clock: this.#c.clock,
        logger: this.#c.logger,
        onChange: (portMapping) => {
          this.#c.onEvent?.({ event: 'port-mapping', portMapping });
          if (this.#o.register && this.#registrar.info) void this.#registrar.amend({ port: portMapping.method ? portMapping.externalPort : port, mapped: portMapping.method !== null }).then(() => this.checkReachability());
        },
      },
      { method: mapping.method, listenHost: host, internalPort: port, leaseSeconds: mapping.leaseSeconds, ...(mapping.gateway ? { gateway: mapping.gateway } : {}) },
    );
    const status = await this.#mapper.start();
    this.#c.onEvent?.({ event: 'port-mapping', portMapping: status });
    if (status.method) this.#registrar.preset({ mapped: true });
    return status.method ? status.externalPort : undefined;
  }

  /**
   * Takes WebRTC offers from now on: the receive loop (long poll) hands each offer to the ICE
   * listener, and the registration says the peer is reached over WebRTC. Without a Signal identity
   * (or messaging) nothing starts, and the log says why.
   */
  #startIce(reason: IceStatus['reason']): void {
    const { signaling, receive, api, logger } = this.#c;
    if (this.#ice) return;
    if (!signaling || !receive || !api.poll || !api.ack) {
      logger.warn('clients cannot reach this peer over WebRTC: this home has no Signal identity (log in again)');
      return;
    }
    const iceServers = api.iceServers ? async () => (await api.iceServers!()).iceServers : async () => [];
    const proxy = this.#proxy;
    const listener = new IceListener(
      {
        signaling,
        iceServers,
        identity: this.#identity,
        logger,
        ticketOk: (ticket) => proxy.ticketOk(ticket),
        paused: () => proxy.stats().paused,
        serve: (request, stream, answer) => proxy.serveTunnel(stream, request, { accept: answer.accept, fail: answer.refuse }),
      },
      { maxConnections: this.#o.maxClients, ...(this.#o.iceBindAddress ? { bindAddress: this.#o.iceBindAddress } : {}) },
    );
    const abort = new AbortController();
    const receiving = receiveLoop({
      api: { poll: api.poll.bind(api), ack: api.ack.bind(api), ...(api.takeKeysLow ? { takeKeysLow: api.takeKeysLow.bind(api) } : {}) },
      clock: this.#c.clock,
      logger,
      signal: abort.signal,
      receive,
      // An offer is answered in the background: the next poll does not wait for ICE.
      onMessage: (m) => void (m.ice && listener.handle(m.from, m.ice)),
      ...(this.#c.topUpKeys ? { topUpKeys: this.#c.topUpKeys } : {}),
    });
    this.#ice = { listener, reason, abort, receiving };
    if (!this.#o.register) {
      // (An unregistered peer is known from its ads, which say so.)
    } else if (this.#registrar.info) void this.#registrar.amend({ ice: true });
    else this.#registrar.preset({ ice: true });
    this.#c.onEvent?.({ event: 'ice', ice: this.#iceStatus()! });
  }

  #iceStatus(): IceStatus | undefined {
    return this.#ice ? { enabled: true, reason: this.#ice.reason, ...this.#ice.listener.stats() } : undefined;
  }

  /**
   * The availability ad: the address is --public-addr if given, else the one the server saw at
   * registration, else the router's mapping, else the listening address.
   */
  ad(): Advertisement {
    const mapped = this.#mapper?.mapping;
    const where = (this.#o.publicAddr ? parseHostPort(this.#o.publicAddr) : undefined) ?? this.#registrar.info ?? (mapped ? { host: mapped.externalHost, port: mapped.externalPort } : undefined) ?? this.#proxy.address;
    return {
      host: where.host,
      port: where.port,
      ...(this.#ice && this.#c.self ? { ice: this.#c.self } : {}),
      protocols: PROTOCOLS,
      identityKey: this.#identity.publicKey,
      ...(this.#o.plaintext ? { plaintext: true } : {}),
      ...(this.#o.sniName ? { sniName: this.#o.sniName } : {}),
      expiresAt: this.#c.clock.now() + this.#o.adLifetimeMs,
    };
  }

  /** Pauses or resumes sharing: out of the registry and the decoy for everyone, or back. */
  async setPaused(paused: boolean): Promise<void> {
    if (paused === this.#proxy.stats().paused) return;
    this.#proxy.setPaused(paused);
    if (!this.#o.register) return;
    if (paused) await this.#registrar.pause();
    else {
      await this.#registrar.resume();
      void this.checkReachability();
    }
  }

  /**
   * Has the server dial this peer's registered address (as a get client would) and reports what
   * it found (event `reachability`, and `status`). A failure to ask is logged, never thrown.
   */
  async checkReachability(): Promise<ReachabilityResponse | undefined> {
    if (!this.#c.api.checkReachability) return undefined;
    try {
      this.#reachability = await this.#c.api.checkReachability();
      this.#c.onEvent?.({ event: 'reachability', reachability: this.#reachability });
      return this.#reachability;
    } catch (err) {
      this.#c.logger.warn({ code: (err as { code?: string }).code }, 'could not ask the server whether this peer is reachable');
      return undefined;
    }
  }

  /** What `status` shows. */
  status(): Record<string, unknown> {
    const info = this.#registrar.info;
    return {
      role: 'give',
      url: this.url,
      ...this.peer,
      registration: info ?? null,
      lastVerdict: info?.lastVerdict ?? null,
      reachability: this.#reachability ?? null,
      portMapping: this.#mapper?.status ?? null,
      ice: this.#iceStatus() ?? null,
      path: this.path,
      ...this.#proxy.stats(),
    };
  }

  /** How get clients reach this peer: over WebRTC, through the router's port mapping, or directly at its address. */
  get path(): 'ice' | 'mapped' | 'direct' {
    if (this.#ice) return 'ice';
    return this.#mapper?.mapping ? 'mapped' : 'direct';
  }

  stats(): ReturnType<GiveProxy['stats']> {
    return this.#proxy.stats();
  }

  /** Out of the registry first, so that no new client is sent here, then the router's mapping goes and the tunnels drain. */
  async stop(): Promise<void> {
    if (this.#o.register) await this.#registrar.stop();
    if (this.#ice) {
      this.#ice.abort.abort();
      await this.#ice.receiving;
      this.#ice.listener.close();
    }
    await this.#mapper?.stop();
    await this.#proxy.stop();
  }
}

export function createGive(components: GiveComponents, options: GiveOptions): GivePeer {
  return new GivePeer(components, options);
}
