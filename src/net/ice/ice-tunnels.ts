import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Address, IceServersResponse, IceSignal } from '../../protocol/messages.js';
import { openChannelTunnel } from './channel-tunnel.js';
import { candidateTypes, checkIceAnswer, IcePeer } from './ice-peer.js';
import { rtcConfig } from './rtc-config.js';
import { routeStackLog } from './stack-log.js';

/** Sends ICE signaling to a device, end-to-end encrypted, through the server's store-and-forward. */
export interface IceSignaling {
  send(to: Address, signal: IceSignal): Promise<void>;
}

/** A give peer reached over WebRTC, as its clients know it. */
export interface IcePeerEndpoint {
  identityKey: string;
  ice: Address;
}

export interface IceTunnelsComponents {
  signaling: IceSignaling;
  /** The server's STUN and TURN servers (with a TURN credential minted for this client). */
  iceServers(): Promise<IceServersResponse['iceServers']>;
  logger: Logger;
}

export interface IceTunnelsOptions {
  /** The offer to connected, answer included: two store-and-forward messages and ICE checks. */
  connectTimeoutMs?: number;
  /** Candidate gathering (STUN, a TURN allocation) is cut short after this. */
  gatherTimeoutMs?: number;
  /** Only candidates on this local address (tests on loopback). */
  bindAddress?: string;
}

/** How a WebRTC connection runs: directly between the two NATs (`ice`), or through the TURN relay (`turn`). */
export type IcePath = 'ice' | 'turn';

/**
 * The path a connection runs on now. ICE may start on the relay pair, whose checks succeed first,
 * and move to a direct pair that succeeds after it, so the pair seen at connect time goes stale
 * (through two endpoint-independent NATs it read 'turn' while the connection ran direct).
 */
export function currentPath(up: IcePeer, fallback?: IcePath): IcePath | undefined {
  const selected = up.selectedPath();
  if (!selected) return fallback;
  return selected.local === 'relay' || selected.remote === 'relay' ? 'turn' : 'ice';
}

const CONNECT_TIMEOUT_MS = 15_000;
const GATHER_TIMEOUT_MS = 3000;
/** Answers waited for at once; more offers than this are refused here, not sent. */
const MAX_PENDING = 64;

/** A connection to one peer: being made, or up (and how it runs). */
interface Connection {
  made: Promise<IcePeer>;
  up?: IcePeer;
  path?: IcePath;
}

interface Pending {
  from: Address;
  resolve(signal: IceSignal): void;
}

const unreachable = (message: string, details: Record<string, unknown> = {}) => new LanternError('LA_ERR_DESTINATION_UNREACHABLE', message, { details: { stage: 'ice', ...details } });
const deviceKey = (a: Address) => `${a.userId}.${a.deviceId}`;

/**
 * Tunnels through give peers reached over WebRTC, for get and the verifier: one connection per peer,
 * made with one offer and one answer carried as end-to-end encrypted messages (the server sees
 * neither the candidates, which name home addresses, nor the ticket), its DTLS fingerprint pinned
 * to the peer's identity key by the signed answer; then one data channel per tunnel, asked for as a
 * CONNECT would be. A connection that fails or drops is made again at the next tunnel.
 */
export class IceTunnels {
  readonly #c: IceTunnelsComponents;
  readonly #o: IceTunnelsOptions;
  readonly #peers = new Map<string, Connection>();
  readonly #pending = new Map<string, Pending>();

  constructor(components: IceTunnelsComponents, options: IceTunnelsOptions = {}) {
    this.#c = components;
    this.#o = options;
    routeStackLog(components.logger);
  }

  /** Opens a tunnel to `target` through the peer, connecting to it first if no connection is up. */
  async open(peer: IcePeerEndpoint, ticket: string, target: { host: string; port: number }, timeoutMs: number): Promise<Duplex> {
    // A connection the WebRTC stack closed on its own while it was being made, or whose checks
    // failed (a NAT mapping raced them), is made once more, on new ports. A refusal, no answer or a
    // connection that timed out is not: the peer said no, is not listening, or there is no path.
    const connection = await this.#connection(peer, ticket).catch((err: unknown) => {
      if (LanternError.is(err) && err.details?.['stage'] === 'ice' && ['closed', 'failed'].includes(String(err.details['state']))) return this.#connection(peer, ticket);
      throw err;
    });
    try {
      return await openChannelTunnel(connection.pc, { ticket, host: target.host, port: target.port }, timeoutMs);
    } catch (err) {
      // The connection dropped under this tunnel (and no refusal came): once more on a new one.
      // (Asked of the stack: the channel's closed event can come before the connection's own.)
      if (!connection.gone || (LanternError.is(err) && err.details?.['peerStatus'] !== undefined)) throw withState(err, connection);
      this.#c.logger.debug({ reason: (err as Error).message, state: connection.describe() }, 'the WebRTC connection dropped under a new tunnel; once more on a new connection');
      connection.close();
      return openChannelTunnel((await this.#connection(peer, ticket)).pc, { ticket, host: target.host, port: target.port }, timeoutMs);
    }
  }

  /** How the connection to this peer runs, if one is up. */
  path(peer: IcePeerEndpoint): IcePath | undefined {
    const known = this.#peers.get(`${deviceKey(peer.ice)} ${peer.identityKey}`);
    return known?.up && !known.up.gone ? currentPath(known.up, known.path) : undefined;
  }

  /**
   * A signal from a give peer (received by the caller's message loop): the answer (or refusal) to
   * an offer of ours, from the device the offer went to. Anything else is ignored; true if taken.
   */
  deliver(from: Address, signal: IceSignal): boolean {
    if (signal.kind === 'offer') return false;
    const pending = this.#pending.get(signal.session);
    if (!pending || deviceKey(pending.from) !== deviceKey(from)) return false;
    this.#pending.delete(signal.session);
    pending.resolve(signal);
    return true;
  }

  /** Closes every connection (and the tunnels on them); new ones can be made after. */
  close(): void {
    for (const { made } of this.#peers.values()) made.then((p) => p.close(), () => undefined);
    this.#peers.clear();
  }

  /**
   * The connection to the peer: the one up, or the one being made (its tunnels share its outcome),
   * else a new one. A connection that ended or failed is forgotten.
   */
  #connection(peer: IcePeerEndpoint, ticket: string): Promise<IcePeer> {
    const key = `${deviceKey(peer.ice)} ${peer.identityKey}`;
    const known = this.#peers.get(key);
    if (known && !known.up?.gone) return known.made;
    const entry: Connection = { made: this.#connect(peer, ticket) };
    this.#peers.set(key, entry);
    entry.made.then(
      (up) => {
        entry.up = up;
        entry.path = currentPath(up, 'ice');
        up.onEnd(() => this.#peers.get(key) === entry && this.#peers.delete(key));
      },
      () => this.#peers.get(key) === entry && this.#peers.delete(key),
    );
    return entry.made;
  }

  async #connect(peer: IcePeerEndpoint, ticket: string): Promise<IcePeer> {
    if (this.#pending.size >= MAX_PENDING) throw unreachable('too many WebRTC connections being made at once');
    const timeoutMs = this.#o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const session = randomBytes(16).toString('base64url');
    const servers = await this.#c.iceServers().catch((err: unknown) => {
      // Without the server's STUN and TURN, host candidates may still do (the same network).
      this.#c.logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'no ICE servers from the server; trying with host candidates only');
      return [];
    });
    const connection = new IcePeer(`get-${session.slice(0, 8)}`, rtcConfig(servers, this.#o.bindAddress ? { bindAddress: this.#o.bindAddress } : {}));
    try {
      const offer = await connection.offer(this.#o.gatherTimeoutMs ?? GATHER_TIMEOUT_MS);
      const answered = new Promise<IceSignal>((resolve) => this.#pending.set(session, { from: peer.ice, resolve }));
      await this.#c.signaling.send(peer.ice, { kind: 'offer', session, sdp: offer, ticket });
      const answer = await withTimeout(answered, deadline - Date.now());
      if (!answer) throw unreachable(`the give peer did not answer the WebRTC offer within ${timeoutMs} ms`, { status: 'no-answer' });
      if (answer.kind === 'refused') throw refusal(answer.reason);
      if (answer.kind !== 'answer') throw unreachable('the give peer answered with an offer');
      checkIceAnswer({ identityKey: peer.identityKey, session, answerSdp: answer.sdp, signature: answer.signature });
      this.#c.logger.debug({ offered: candidateTypes(offer), answered: candidateTypes(answer.sdp), servers: servers.length }, 'WebRTC answer');
      connection.accept(answer.sdp);
      await connection.connected(Math.max(1, deadline - Date.now()));
      return connection;
    } catch (err) {
      connection.close();
      throw err;
    } finally {
      this.#pending.delete(session);
    }
  }
}

/** A tunnel that failed on a connection still up: the stack's view of the connection in its message, for the log. */
function withState(err: unknown, connection: IcePeer): unknown {
  if (!LanternError.is(err) || err.details?.['status'] !== 'closed') return err;
  return new LanternError(err.code, `${err.message} (${connection.describe()})`, { cause: err, details: err.details });
}

/** A refused offer as the error a refused TCP tunnel gives. */
function refusal(reason: Extract<IceSignal, { kind: 'refused' }>['reason']): LanternError {
  if (reason === 'ticket') return new LanternError('LA_ERR_TICKET_INVALID', 'the give peer refused the WebRTC offer: ticket', { details: { status: 'ticket', peerStatus: 407 } });
  if (reason === 'busy') return new LanternError('LA_ERR_PROXY_BUSY', 'the give peer refused the WebRTC offer: busy', { details: { status: 'busy', peerStatus: 503 } });
  return unreachable(`the give peer refused the WebRTC offer: ${reason}`, { status: reason });
}

/** The promise's value, or undefined after `ms`. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err as Error);
      },
    );
  });
}
