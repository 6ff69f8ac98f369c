import type { Clock, ClockTimer } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import type { ApiClient } from '../../net/api-client.js';

/** What registration asks of the server. */
export type RegistrationApi = Pick<ApiClient, 'registerPeer' | 'heartbeatPeer' | 'unregisterPeer'>;
import type { PeerInfo, PeerRegistration } from '../../protocol/messages.js';

/**
 * Keeps a give peer registered: registers at start, heartbeats at a third of the registration's
 * remaining life (registering again if the server forgot it), unregisters at stop. Failures to
 * reach the server are logged and retried at the next beat; the proxy keeps serving meanwhile.
 */
export class PeerRegistrar implements Startable {
  readonly #c: { api: RegistrationApi; clock: Clock; logger: Logger };
  readonly #faults: FaultBoundary;
  #registration: PeerRegistration;
  #timer: ClockTimer | undefined;
  #info: PeerInfo | undefined;
  #stopped = false;

  constructor(components: { api: RegistrationApi; clock: Clock; logger: Logger; faults?: FaultBoundary }, registration: PeerRegistration) {
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
  }

  #schedule(): void {
    if (this.#stopped) return;
    const left = this.#info ? this.#info.expiresAt - this.#c.clock.now() : 30_000;
    // A faulted beat is dropped; the next one is scheduled all the same.
    this.#timer = this.#c.clock.setTimeout(
      this.#faults.wrap('timer', () => this.#beat(), () => this.#schedule()),
      Math.max(1000, left / 3),
    );
    this.#timer.unref?.();
  }

  async #beat(): Promise<void> {
    try {
      this.#info = await this.#c.api.heartbeatPeer();
    } catch (err) {
      if (LanternError.is(err, 'LA_ERR_PEER_NOT_REGISTERED')) {
        this.#info = await this.#c.api.registerPeer(this.#registration).catch(() => undefined);
      } else {
        this.#c.logger.warn({ code: (err as LanternError).code }, 'heartbeat failed; retrying');
      }
    }
    this.#schedule();
  }

  /** Leaves the registry until `resume` (sharing paused). */
  async pause(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) this.#c.clock.clearTimeout(this.#timer);
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
