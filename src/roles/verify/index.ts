import type { Clock } from '../../core/clock.js';
import type { Startable } from '../../core/lifecycle.js';
import type { Logger } from '../../core/logger.js';
import type { ReceivedMessage } from '../../messaging/inbox.js';
import { receiveLoop, type ReceiveApi } from '../../messaging/receive-loop.js';
import { IceTunnels, type IceSignaling } from '../../net/ice/ice-tunnels.js';
import { Backoff, SERVER_BACKOFF, sleep } from '../../net/retry.js';
import type { IceServersResponse, PollResponse } from '../../protocol/messages.js';
import { Verifier, type VerdictReport, type VerifierOptions, type VerifyApi } from './verifier.js';

export interface VerifyComponents {
  api: VerifyApi & Partial<ReceiveApi> & { iceServers?(): Promise<IceServersResponse> };
  /**
   * Peers behind a NAT are verified over WebRTC, as get reaches them: ICE signaling sent end to
   * end encrypted, and the receive loop's batches decrypted and stored (the caller's keystore).
   */
  signaling?: IceSignaling;
  receive?(batch: PollResponse): Promise<ReceivedMessage[]>;
  topUpKeys?(): Promise<void>;
  clock: Clock;
  logger: Logger;
  /** Each verdict, as it is posted. */
  onVerdict?(report: VerdictReport): void;
  /** [0, 1) for the jitter between passes (default Math.random). */
  jitter?(): number;
}

export interface VerifyOptions extends VerifierOptions {
  /** WebRTC candidates only on this local address (tests on loopback). */
  iceBindAddress?: string;
  /** Time from the start of one pass to the start of the next. */
  intervalMs: number;
}

/**
 * The verify role: passes over every live candidate and verified peer, one starting every
 * `intervalMs` from the start of the last (at once if a pass took longer), so a peer that dies is
 * probed within the interval and evicted within the interval and a probe's timeout. A failed pass
 * is logged and the next one comes on time. `once()` is a single pass (`verify --once`).
 */
export class VerifyLoop implements Startable {
  readonly #c: VerifyComponents;
  readonly #o: VerifyOptions;
  readonly #verifier: Verifier;
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;
  /** Passes begun. */
  passes = 0;
  /** A number in [0, 1) for the jitter between passes (a test may fix it). */
  readonly #jitter: () => number;
  readonly #ice: IceTunnels | undefined;

  constructor(components: VerifyComponents, options: VerifyOptions) {
    this.#c = components;
    this.#o = options;
    const { api, signaling } = components;
    this.#ice =
      signaling && components.receive && api.poll && api.ack && api.iceServers
        ? new IceTunnels({ signaling, iceServers: async () => (await api.iceServers!()).iceServers, logger: components.logger }, options.iceBindAddress ? { bindAddress: options.iceBindAddress } : {})
        : undefined;
    this.#verifier = new Verifier({ ...components, ...(this.#ice ? { ice: this.#ice } : {}) }, options);
    this.#jitter = components.jitter ?? Math.random;
  }

  /** One pass; `start` hears how many peers it covers. */
  async once(start?: (total: number) => void): Promise<VerdictReport[]> {
    const receiving = new AbortController();
    const received = this.#receive(receiving.signal);
    try {
      return await this.#verifier.pass({ ...(start ? { start } : {}), ...(this.#c.onVerdict ? { verdict: this.#c.onVerdict } : {}) });
    } finally {
      this.#verifier.close();
      receiving.abort();
      await received;
    }
  }

  async start(): Promise<void> {
    this.#running ??= Promise.all([this.#loop(), this.#answerRequests(), this.#receive(this.#abort.signal)]).then(() => undefined);
  }

  /** No new probe starts; those under way finish and post their verdicts. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#running;
    this.#verifier.close();
  }

  /** Receives the answers of give peers behind a NAT to the verifier's offers, while probes run. */
  async #receive(signal: AbortSignal): Promise<void> {
    const { api, receive, clock, logger, topUpKeys } = this.#c;
    const ice = this.#ice;
    if (!ice || !receive || !api.poll || !api.ack) return;
    await receiveLoop({
      api: { poll: api.poll.bind(api), ack: api.ack.bind(api), ...(api.takeKeysLow ? { takeKeysLow: api.takeKeysLow.bind(api) } : {}) },
      clock,
      logger,
      signal,
      receive,
      onMessage: (m) => void (m.ice && ice.deliver(m.from, m.ice)),
      ...(topUpKeys ? { topUpKeys } : {}),
    });
  }

  /**
   * Between passes: long-polls the server for peers to probe now (one that registered, one users
   * reported) and probes each at once, so a new peer is admitted in about a second whatever the
   * interval. A failed poll is waited out (SERVER_BACKOFF) and retried.
   */
  async #answerRequests(): Promise<void> {
    const { api, clock, logger } = this.#c;
    if (!api.probeRequests) return;
    const signal = this.#abort.signal;
    const backoff = new Backoff(SERVER_BACKOFF);
    const probing = new Map<string, Promise<void>>();
    let since: number | undefined;
    while (!signal.aborted) {
      try {
        const asked = await api.probeRequests(since, PROBE_REQUEST_WAIT_SECONDS, signal);
        since = asked.now;
        backoff.reset();
        for (const peer of asked.peers) {
          // A peer asked for again while its probe is under way is not probed twice.
          if (probing.has(peer.peerId)) continue;
          const probe = this.#verifier
            .probe(peer)
            .then((report) => void (report && this.#c.onVerdict?.(report)))
            .catch((err: unknown) => logger.warn({ code: (err as { code?: string }).code }, 'requested probe failed'))
            .finally(() => probing.delete(peer.peerId));
          probing.set(peer.peerId, probe);
        }
      } catch (err) {
        if (signal.aborted) break;
        logger.warn({ code: (err as { code?: string }).code }, 'waiting for probe requests failed; retrying');
        await sleep(clock, backoff.next(), signal);
      }
    }
    // Probes under way finish and post their verdicts before stop() returns.
    await Promise.all(probing.values());
  }

  async #loop(): Promise<void> {
    const { clock, logger } = this.#c;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const started = clock.now();
      this.passes++;
      await this.#verifier
        .pass({ signal, ...(this.#c.onVerdict ? { verdict: this.#c.onVerdict } : {}) })
        .catch((err: unknown) => logger.warn({ code: (err as { code?: string }).code, err }, 'pass failed'));
      // Passes come about an interval apart, never on a beat a peer could lock on to (±20 %).
      const interval = Math.round(this.#o.intervalMs * (0.8 + 0.4 * this.#jitter()));
      await sleep(clock, Math.max(0, started + interval - clock.now()), signal);
    }
  }
}

/** How long one wait for probe requests is held by the server. */
const PROBE_REQUEST_WAIT_SECONDS = 30;

export function createVerify(components: VerifyComponents, options: VerifyOptions): VerifyLoop {
  return new VerifyLoop(components, options);
}
