import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Address, IceServersResponse, IceSignal } from '../../protocol/messages.js';
import { acceptChannelTunnels, type ChannelTunnelHandler } from './channel-tunnel.js';
import { IcePeer, signIceAnswer } from './ice-peer.js';
import { currentPath, type IcePath, type IceSignaling } from './ice-tunnels.js';
import { rtcConfig } from './rtc-config.js';
import { routeStackLog } from './stack-log.js';

export interface IceListenerComponents {
  signaling: IceSignaling;
  /** The server's STUN and TURN servers (with a TURN credential minted for this peer). */
  iceServers(): Promise<IceServersResponse['iceServers']>;
  /** Signs the answer's DTLS fingerprint (the give peer's identity key). */
  identity: { sign(data: Buffer): string };
  logger: Logger;
  /** Whether an offer's ticket opens this peer (checked before anything of this peer is sent back). */
  ticketOk(ticket: string): boolean;
  /** Whether sharing is paused (offers are refused). */
  paused(): boolean;
  /** Serves each tunnel a connected client opens (the give proxy's checks). */
  serve: ChannelTunnelHandler;
}

export interface IceListenerOptions {
  /** WebRTC connections up at once (each holds UDP sockets and a DTLS session). */
  maxConnections?: number;
  /** Of those, from one user. */
  maxPerUser?: number;
  connectTimeoutMs?: number;
  gatherTimeoutMs?: number;
  bindAddress?: string;
}

export interface IceListenerStats {
  connections: number;
  /** Connections up now by how they run: between the NATs, or through the TURN relay. */
  paths: Record<IcePath, number>;
  offersAnswered: number;
  offersRefused: number;
}

const CONNECT_TIMEOUT_MS = 15_000;
const GATHER_TIMEOUT_MS = 3000;
/** Sessions remembered, so that an offer seen before is not answered again. */
const SEEN_SESSIONS = 4096;

/**
 * The give side of WebRTC tunnels: answers offers that come (end-to-end encrypted) from clients
 * holding a ticket for this peer, signing its DTLS fingerprint for the session with the identity
 * key, and serves the tunnels they then open. Nothing of the peer (not even a candidate, which
 * names its home address) is sent to an offer without a valid ticket. Connections are capped in
 * all and per user; one that fails or drops is forgotten.
 */
export class IceListener {
  readonly #c: IceListenerComponents;
  readonly #o: IceListenerOptions;
  readonly #connections = new Map<IcePeer, { user: string; path?: IcePath }>();
  /** Offers being answered (session → user), counted against the caps before their connection exists. */
  readonly #starting = new Map<string, string>();
  readonly #seen = new Set<string>();
  #answered = 0;
  #refused = 0;
  #closed = false;

  constructor(components: IceListenerComponents, options: IceListenerOptions = {}) {
    this.#c = components;
    this.#o = options;
    routeStackLog(components.logger);
  }

  /** A signal from a client (received by the caller's message loop); only offers are taken. */
  async handle(from: Address, signal: IceSignal): Promise<void> {
    if (signal.kind !== 'offer' || this.#closed) return;
    if (this.#seen.has(signal.session)) return;
    if (this.#seen.size >= SEEN_SESSIONS) this.#seen.delete(this.#seen.values().next().value!);
    this.#seen.add(signal.session);
    const reason = this.#refusal(from, signal.ticket);
    if (reason) {
      this.#refused++;
      return this.#send(from, { kind: 'refused', session: signal.session, reason });
    }
    this.#starting.set(signal.session, from.userId);
    try {
      await this.#answer(from, signal);
    } finally {
      this.#starting.delete(signal.session);
    }
  }

  #refusal(from: Address, ticket: string): 'ticket' | 'paused' | 'busy' | undefined {
    if (!this.#c.ticketOk(ticket)) return 'ticket';
    if (this.#c.paused()) return 'paused';
    const users = [...[...this.#connections.values()].map((c) => c.user), ...this.#starting.values()];
    const mine = users.filter((u) => u === from.userId).length;
    if (users.length >= (this.#o.maxConnections ?? 64) || mine >= (this.#o.maxPerUser ?? 4)) return 'busy';
    return undefined;
  }

  async #answer(from: Address, offer: Extract<IceSignal, { kind: 'offer' }>): Promise<void> {
    const servers = await this.#c.iceServers().catch((err: unknown) => {
      this.#c.logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'no ICE servers from the server; answering with host candidates only');
      return [];
    });
    const connection = new IcePeer(`give-${offer.session.slice(0, 8)}`, rtcConfig(servers, this.#o.bindAddress ? { bindAddress: this.#o.bindAddress } : {}));
    const entry: { user: string; path?: IcePath } = { user: from.userId };
    this.#connections.set(connection, entry);
    this.#starting.delete(offer.session);
    connection.onEnd(() => {
      this.#connections.delete(connection);
      this.#c.logger.debug({ state: connection.state, connections: this.#connections.size }, 'WebRTC client connection ended');
    });
    acceptChannelTunnels(connection.pc, this.#c.serve, undefined, (err) => this.#c.logger.debug({ reason: err.message }, 'a tunnel over WebRTC ended with an error'));
    try {
      const sdp = await connection.answer(offer.sdp, this.#o.gatherTimeoutMs ?? GATHER_TIMEOUT_MS);
      const signature = signIceAnswer(this.#c.identity, offer.session, sdp);
      await this.#c.signaling.send(from, { kind: 'answer', session: offer.session, sdp, signature });
      this.#answered++;
      await connection.connected(this.#o.connectTimeoutMs ?? CONNECT_TIMEOUT_MS);
      entry.path = currentPath(connection, 'ice');
      this.#c.logger.info({ path: entry.path, connections: this.#connections.size }, 'WebRTC client connected');
    } catch (err) {
      connection.close();
      this.#c.logger.info({ code: LanternError.is(err) ? err.code : undefined, reason: (err as Error).message }, 'WebRTC offer not completed');
    }
  }

  async #send(to: Address, signal: IceSignal): Promise<void> {
    try {
      await this.#c.signaling.send(to, signal);
    } catch (err) {
      this.#c.logger.info({ code: LanternError.is(err) ? err.code : undefined }, 'could not send an ICE refusal');
    }
  }

  stats(): IceListenerStats {
    const paths: Record<IcePath, number> = { ice: 0, turn: 0 };
    for (const [connection, c] of this.#connections) if (c.path) paths[currentPath(connection, c.path)!]++;
    return { connections: this.#connections.size, paths, offersAnswered: this.#answered, offersRefused: this.#refused };
  }

  /** Closes every connection, and takes no more offers. */
  close(): void {
    this.#closed = true;
    for (const connection of [...this.#connections.keys()]) connection.close();
  }
}
