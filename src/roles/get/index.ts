import type { Clock } from '../../core/clock.js';
import type { FaultBoundary } from '../../core/fault-boundary.js';
import type { Startable } from '../../core/lifecycle.js';
import type { Logger } from '../../core/logger.js';
import type { ReceivedMessage } from '../../messaging/inbox.js';
import { IceTunnels, type IceSignaling } from '../../net/ice/ice-tunnels.js';
import { longPoll } from '../../net/long-poll.js';
import type { Advertisement, IceServersResponse, PollResponse } from '../../protocol/messages.js';
import { LocalProxy, type LocalProxyOptions } from './local-proxy.js';
import { UpstreamPool } from './upstream-pool.js';
import { Upstreams, type UpstreamApi, type UpstreamChange } from './upstreams.js';

/** What get asks of the server: upstreams and tickets, and its messages. */
export interface GetApi extends UpstreamApi {
  poll(waitSeconds: number, limit: number, signal: AbortSignal, ack: readonly string[]): Promise<PollResponse | undefined>;
  ack(ids: string[]): Promise<unknown>;
  /** Whether a poll answer said this device's one-time keys run low (cleared by reading it). */
  takeKeysLow?(): boolean;
  /** The server's STUN and TURN servers (for peers reached over WebRTC). */
  iceServers?(): Promise<IceServersResponse>;
}

export interface GetComponents {
  api: GetApi;
  clock: Clock;
  logger: Logger;
  faults?: FaultBoundary;
  /** Contacts' unexpired availability ads (the keystore is the caller's, opened per read). */
  ads(now: number): Promise<Advertisement[]>;
  /** Decrypts and stores a polled batch; returns the messages new to this device. */
  receive(batch: PollResponse): Promise<ReceivedMessage[]>;
  /** Each message received (the CLI prints them). */
  onMessage?(message: ReceivedMessage): void;
  /** Uploads more one-time keys (a poll answer said they run low). */
  topUpKeys?(): Promise<void>;
  /** Give peers appeared or vanished, or the server became (un)reachable (the CLI prints it). */
  onUpstreams?(change: UpstreamChange): void;
  /**
   * Sends ICE signaling to a give peer's device, end-to-end encrypted (the caller's keystore and
   * messenger). Without it, peers behind a NAT (reached over WebRTC) are not used.
   */
  signaling?: IceSignaling;
}

export interface GetOptions extends LocalProxyOptions {
  /** WebRTC candidates only on this local address (tests on loopback). */
  iceBindAddress?: string;
  /** How often the upstreams are read again (default 5 s). */
  refreshMs?: number;
  /** How long each poll for messages may be held (default 30 s). */
  pollWaitSeconds?: number;
}

/**
 * The get role: a local proxy (HTTP CONNECT, HTTP forward, SOCKS5) whose tunnels go through give
 * peers (the verified round robin and contacts' ads, read again every few seconds), and the
 * receive loop that keeps messages (and ads, which refresh the upstreams) coming meanwhile.
 */
export class GetClient implements Startable {
  readonly #c: GetComponents;
  readonly #o: GetOptions;
  readonly #source: Upstreams;
  readonly #pool: UpstreamPool;
  readonly #proxy: LocalProxy;
  readonly #abort = new AbortController();
  readonly #ice: IceTunnels | undefined;
  #refresher: ReturnType<typeof setInterval> | undefined;
  #receiving: Promise<void> | undefined;

  constructor(components: GetComponents, options: GetOptions) {
    this.#c = components;
    this.#o = options;
    this.#source = new Upstreams({ ...components, ...(components.onUpstreams ? { onChange: components.onUpstreams } : {}) });
    const { signaling, api } = components;
    this.#ice =
      signaling && api.iceServers
        ? new IceTunnels({ signaling, iceServers: async () => (await api.iceServers!()).iceServers, logger: components.logger }, options.iceBindAddress ? { bindAddress: options.iceBindAddress } : {})
        : undefined;
    this.#pool = new UpstreamPool({ source: this.#source, logger: components.logger, ...(this.#ice ? { ice: this.#ice } : {}) });
    this.#proxy = new LocalProxy({ pool: this.#pool, logger: components.logger, ...(components.faults ? { faults: components.faults } : {}) }, options);
  }

  get url(): string {
    return this.#proxy.url;
  }

  /** Give peers known now. */
  get upstreams(): number {
    return this.#source.upstreams().length;
  }

  /** Whether the server answered the last time the peers were read. */
  get serverReachable(): boolean {
    return this.#source.serverReachable();
  }

  async start(): Promise<void> {
    await this.#source.refresh();
    await this.#proxy.start();
    const { logger } = this.#c;
    this.#refresher = setInterval(() => void this.#source.refresh().catch((err: unknown) => logger.warn({ err }, 'refresh failed')), this.#o.refreshMs ?? 5000);
    this.#refresher.unref();
    const wait = this.#o.pollWaitSeconds ?? 30;
    this.#receiving = longPoll({
      clock: this.#c.clock,
      logger,
      signal: this.#abort.signal,
      follow: true,
      poll: async (acks, signal) => {
        const batch = await this.#c.api.poll(wait, 100, signal, acks);
        if (this.#c.api.takeKeysLow?.()) await this.#c.topUpKeys?.();
        return batch;
      },
      handle: async (batch) => {
        const messages = await this.#c.receive(batch);
        // An accepted ad is a new upstream: in use now (before it is announced), not at the next refresh.
        if (messages.some((m) => m.adStatus === 'accepted')) await this.#source.refresh();
        for (const m of messages) {
          // A give peer's answer to an offer of ours goes to the session waiting for it.
          if (m.ice) this.#ice?.deliver(m.from, m.ice);
          else this.#c.onMessage?.(m);
        }
      },
      ack: (ids) => this.#c.api.ack(ids),
    });
  }

  /** Stops receiving (stored messages are acked), then the proxy, then the peers' connections. */
  async stop(): Promise<void> {
    if (this.#refresher) clearInterval(this.#refresher);
    this.#abort.abort();
    await this.#receiving;
    await this.#proxy.stop();
    this.#pool.close();
  }
}

export function createGet(components: GetComponents, options: GetOptions): GetClient {
  return new GetClient(components, options);
}
