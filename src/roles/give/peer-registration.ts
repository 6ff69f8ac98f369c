import type { Clock, ClockTimer } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import type { ApiClient } from '../../net/api-client.js';
import { Backoff, SERVER_BACKOFF, sleep } from '../../net/retry.js';
import type { PeerInfo, PeerRegistration } from '../../protocol/messages.js';

/** What registration asks of the server. */
export type RegistrationApi = Pick<ApiClient, 'registerPeer' | 'heartbeatPeer' | 'unregisterPeer'> & Partial<Pick<ApiClient, 'peerSelf'>>;

/** How long one wait for a verdict is held by the server. */
const WATCH_SECONDS = 30;

/**
 * Keeps a give peer registered: registers at start, heartbeats at a third of the registration's
 * remaining life (registering again if the server forgot it), unregisters at stop. Failures to
 * reach the server are logged and retried at the next beat; the proxy keeps serving meanwhile.
 */
export class PeerRegistrar implements Startable {
  readonly #c: { api: RegistrationApi; clock: Clock; logger: Logger; onChange?: (info: PeerInfo) => void };
  readonly #faults: FaultBoundary;
  #registration: PeerRegistration;
  #timer: ClockTimer | undefined;
  #info: PeerInfo | undefined;
  #stopped = false;
  #watching: AbortController | undefined;
  readonly #beatBackoff = new Backoff(SERVER_BACKOFF);
  #beatFailing = false;
  /** A change the server has not taken yet (amend failed): the next beat registers instead. */
  #amended = false;

  constructor(components: { api: RegistrationApi; clock: Clock; logger: Logger; faults?: FaultBoundary; onChange?: (info: PeerInfo) => void }, registration: PeerRegistration) {
    this.#c = components;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#registration = registration;
  }

  /** The last registration the server confirmed. */
  get info(): PeerInfo | undefined {
    return this.#info;
  }

  /** Registers (at `port`, when it is known only now: a proxy listening on port 0). */
  async start(port?: number): Promise<void> {
    if (port !== undefined) this.#registration = { ...this.#registration, port };
    this.#info = await this.#c.api.registerPeer(this.#registration);
    this.#schedule();
    this.#watch();
  }

  /** Registers again at another port (the router's mapping moved); a failure is left to the next heartbeat. */
  moveTo(port: number): Promise<void> {
    return this.amend({ port });
  }

  /** Changes what the next registration says (before `start`). */
  preset(change: Partial<PeerRegistration>): void {
    this.#registration = { ...this.#registration, ...change };
  }

  /**
   * Registers again with a change (another port, reached over WebRTC from now on); a failure is
   * left to the next heartbeat, which registers what is current.
   */
  async amend(change: Partial<PeerRegistration>): Promise<void> {
    this.#registration = { ...this.#registration, ...change };
    if (this.#stopped) return;
    this.#amended = true;
    try {
      this.#update(await this.#c.api.registerPeer(this.#registration));
      this.#amended = false;
    } catch (err) {
      this.#c.logger.warn({ code: (err as LanternError).code }, 'could not register the new port; the next heartbeat registers it');
    }
  }

  /** A new registration or verdict from the server (state or last verdict changed): kept, and told. */
  #update(info: PeerInfo | undefined): void {
    // An answer that arrives after a pause or stop (a beat under way then) changes nothing.
    if (this.#stopped) return;
    const before = this.#info;
    this.#info = info;
    if (info && (info.state !== before?.state || info.lastVerdict?.at !== before?.lastVerdict?.at || info.peerId !== before?.peerId)) this.#c.onChange?.(info);
  }

  /**
   * Waits on the server for each new verdict (GET /v1/peers/self?wait=…&after=…), so that the
   * peer's state is known here within a second of the verdict, not at the next heartbeat. A failed
   * wait is retried after a backoff (0.5 s up to 30 s).
   */
  #watch(): void {
    const peerSelf = this.#c.api.peerSelf?.bind(this.#c.api);
    if (!peerSelf || this.#watching) return;
    const abort = (this.#watching = new AbortController());
    const backoff = new Backoff(SERVER_BACKOFF);
    void (async () => {
      while (!abort.signal.aborted) {
        try {
          const info = await peerSelf({ seconds: WATCH_SECONDS, after: this.#info?.lastVerdict?.at ?? 0, signal: abort.signal });
          if (abort.signal.aborted) break;
          this.#update(info);
          backoff.reset();
        } catch (err) {
          if (abort.signal.aborted) break;
          this.#c.logger.debug({ code: (err as LanternError).code }, 'waiting for a verdict failed; retrying');
          await sleep(this.#c.clock, backoff.next(), abort.signal);
        }
      }
    })();
  }

  /** The next heartbeat: at a third of the registration's remaining life, or `afterMs` (a failed one's backoff). */
  #schedule(afterMs?: number): void {
    if (this.#stopped) return;
    const left = this.#info ? this.#info.expiresAt - this.#c.clock.now() : 30_000;
    // A faulted beat is dropped; the next one is scheduled all the same.
    this.#timer = this.#c.clock.setTimeout(
      this.#faults.wrap('timer', () => this.#beat(), () => this.#schedule(this.#beatBackoff.next())),
      afterMs ?? Math.max(1000, left / 3),
    );
    this.#timer.unref?.();
  }

  /**
   * One heartbeat (registering again if the server forgot the peer). While the server cannot be
   * reached, beats back off (0.5 s up to 30 s) and the outage is logged once, not at every beat.
   */
  async #beat(): Promise<void> {
    try {
      if (this.#amended) {
        this.#update(await this.#c.api.registerPeer(this.#registration));
        this.#amended = false;
      } else this.#update(await this.#c.api.heartbeatPeer());
    } catch (err) {
      if (this.#stopped) return;
      if (LanternError.is(err, 'LA_ERR_PEER_NOT_REGISTERED')) {
        this.#update(await this.#c.api.registerPeer(this.#registration).catch(() => undefined));
      } else {
        if (!this.#beatFailing) this.#c.logger.warn({ code: (err as LanternError).code }, 'heartbeat failed; retrying with backoff');
        this.#beatFailing = true;
        return this.#schedule(this.#beatBackoff.next());
      }
    }
    if (this.#beatFailing) this.#c.logger.info('heartbeat works again');
    this.#beatFailing = false;
    this.#beatBackoff.reset();
    this.#schedule();
  }

  /** Leaves the registry until `resume` (sharing paused). */
  async pause(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) this.#c.clock.clearTimeout(this.#timer);
    this.#watching?.abort();
    this.#watching = undefined;
    this.#info = undefined;
    await this.#c.api.unregisterPeer().catch((err: unknown) => this.#c.logger.warn({ err }, 'could not unregister'));
  }

  async resume(): Promise<void> {
    this.#stopped = false;
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    await this.pause();
  }
}
