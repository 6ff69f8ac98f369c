import type { Logger } from './logger.js';

/**
 * Where work runs on behalf of a remote party: one name per kind of entry point, used as the
 * `surface` label of `lantern_faults_total` and in the log line of each fault.
 */
export type FaultSurface =
  | 'request'
  | 'upgrade'
  | 'websocket'
  | 'timer'
  | 'proxy'
  | 'dns-udp'
  | 'dns-tcp'
  | 'stun'
  | 'control';

export interface FaultBoundaryComponents {
  logger: Logger;
  /** Hears every fault (the server counts them in `lantern_faults_total{surface}`). */
  onFault?: (surface: FaultSurface) => void;
  /**
   * Fault injection for tests: called inside the boundary before each piece of work of a surface;
   * a throw there is a fault of that work, exactly as if the work itself had thrown.
   */
  inject?: (surface: FaultSurface) => void;
}

/**
 * Error boundaries where the work is. Every socket, request, WebSocket and timer callback that a
 * listener runs goes through `run` or `wrap`: a throw (or a rejected promise) there is a fault of
 * that one piece of work. The fault is logged once with a code, counted, and the piece's own
 * `cleanup` runs (close that connection, drop that timer's work); the process keeps serving.
 *
 * There is deliberately no global catch-all: an exception that escapes every boundary still ends
 * the process (`uncaughtException`), because the state it leaves behind cannot be trusted.
 */
export class FaultBoundary {
  readonly #logger: Logger;
  readonly #onFault: ((surface: FaultSurface) => void) | undefined;
  readonly #inject: ((surface: FaultSurface) => void) | undefined;
  readonly #counts = new Map<FaultSurface, number>();

  constructor(components: FaultBoundaryComponents) {
    this.#logger = components.logger;
    this.#onFault = components.onFault;
    this.#inject = components.inject;
  }

  /** Faults so far, by surface. */
  counts(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  get total(): number {
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** Runs `work` now inside the boundary; see the class comment. */
  run(surface: FaultSurface, work: () => unknown, cleanup?: (err: unknown) => void): void {
    let result: unknown;
    try {
      this.#inject?.(surface);
      result = work();
    } catch (err) {
      this.#fault(surface, err, cleanup);
      return;
    }
    if (result instanceof Promise) result.catch((err: unknown) => this.#fault(surface, err, cleanup));
  }

  /** A callback that runs `work` inside the boundary each time it is called. */
  wrap<A extends unknown[]>(surface: FaultSurface, work: (...args: A) => unknown, cleanup?: (err: unknown, ...args: A) => void): (...args: A) => void {
    return (...args: A) => this.run(surface, () => work(...args), cleanup && ((err) => cleanup(err, ...args)));
  }

  #fault(surface: FaultSurface, err: unknown, cleanup: ((err: unknown) => void) | undefined): void {
    this.#counts.set(surface, (this.#counts.get(surface) ?? 0) + 1);
    try {
      this.#logger.error({ code: 'LA_ERR_INTERNAL', surface, err }, `fault contained (${surface}): the connection or job was dropped, the process goes on`);
      this.#onFault?.(surface);
    } catch {
      // Logging or counting failed; the cleanup still runs.
    }
    if (!cleanup) return;
    try {
      cleanup(err);
    } catch (again) {
      try {
        this.#logger.error({ code: 'LA_ERR_INTERNAL', surface, err: again }, 'fault cleanup failed');
      } catch {
        // Nothing left to tell.
      }
    }
  }
}
