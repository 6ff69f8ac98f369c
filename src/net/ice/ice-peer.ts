import nodeDataChannel, { type PeerConnection, type RtcConfig } from 'node-datachannel';
import { LanternError } from '../../core/errors.js';
import { verifyIdentitySignature } from '../../crypto/peer-identity.js';
import { closePeer, createChannel } from './channels.js';

/** States a connection does not come back from (libdatachannel closes it after 'disconnected'). */
const ENDED_STATES = ['disconnected', 'failed', 'closed'];

/**
 * One end of a WebRTC connection between get and give, signaled without trickle: each side sends
 * one description holding all its candidates (host, server-reflexive from the server's STUN, relay
 * from TURN), so an ICE session is one offer and one answer, two store-and-forward messages.
 *
 * The PeerConnection's callbacks (one per event in node-datachannel) are owned here. When the
 * connection fails or closes, its channels are closed, so every tunnel on it ends with an error
 * rather than waiting on a peer that is gone.
 */
export class IcePeer {
  readonly pc: PeerConnection;
  #state = 'new';
  #gathering = 'new';
  readonly #waiters = new Set<() => void>();
  readonly #onEnd: Array<() => void> = [];
  #ended = false;
  /** On the offering side, whether the control channel is open (undefined on the answering side). */
  #controlOpen: boolean | undefined;

  constructor(name: string, config: RtcConfig) {
    this.pc = new nodeDataChannel.PeerConnection(name, config);
    this.pc.onStateChange((state) => {
      this.#state = state;
      if (ENDED_STATES.includes(state)) this.#end();
      this.#wake();
    });
    this.pc.onGatheringStateChange((state) => {
      this.#gathering = state;
      this.#wake();
    });
  }

  get state(): string {
    return this.#state;
  }

  /** Whether the connection has failed, dropped or been closed (it is not used again). */
  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Whether the connection is gone as the WebRTC stack says now: its state event comes later than
   * a channel's closed event may, so a tunnel that ends with the connection sees it gone here first.
   */
  get gone(): boolean {
    if (this.#ended) return true;
    try {
      return ENDED_STATES.includes(this.pc.state());
    } catch {
      return true;
    }
  }

  /** The WebRTC stack's view now (`connected`/`disconnected`…, ICE `checking`/`connected`…), for an error message. */
  describe(): string {
    try {
      return `connection ${this.pc.state()}, ICE ${this.pc.iceState()}`;
    } catch {
      return 'connection closed';
    }
  }

  /** Calls `fn` once the connection fails, drops or is closed (at once if it has). */
  onEnd(fn: () => void): void {
    if (this.#ended) fn();
    else this.#onEnd.push(fn);
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    closePeer(this.pc);
    for (const fn of this.#onEnd.splice(0)) fn();
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  /** Resolves when `done()` holds, checked at each state change; false after `timeoutMs`. */
  #until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish(true);
      };
      const finish = (value: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(value);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#waiters.add(check);
    });
  }

  /**
   * The local description once candidate gathering completes, or what was gathered within
   * `timeoutMs` (a STUN or TURN server that does not answer must not hold the session up).
   */
  async description(timeoutMs: number): Promise<string> {
    await this.#until(() => this.#gathering === 'complete' && this.pc.localDescription() !== null, timeoutMs);
    const local = this.pc.localDescription();
    if (!local) throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', 'no local description: the WebRTC stack did not start', { details: { stage: 'ice' } });
    return local.sdp;
  }

  /**
   * The offering side: a first channel puts a data section in the offer; its description. The
   * channel stays open for the connection's life: closing it would free its stream id for a
   * tunnel's channel while the close is still under way on the other side.
   */
  async offer(timeoutMs: number): Promise<string> {
    const control = createChannel(this.pc, 'control');
    this.#controlOpen = false;
    control.onOpen(() => {
      this.#controlOpen = true;
      this.#wake();
    });
    return this.description(timeoutMs);
  }

  /** The answering side: takes the offer; its answer once gathered. */
  async answer(offerSdp: string, timeoutMs: number): Promise<string> {
    this.#remote(offerSdp, 'offer');
    return this.description(timeoutMs);
  }

  /** The offering side: takes the answer (its fingerprint already checked by the caller). */
  accept(answerSdp: string): void {
    this.#remote(answerSdp, 'answer');
  }

  #remote(sdp: string, type: 'offer' | 'answer'): void {
    // The WebRTC stack may have closed the connection on its own (its state event not delivered
    // yet): a connection to make again, not a bad description.
    if (this.pc.state() === 'closed') throw closedUnder(type);
    try {
      this.pc.setRemoteDescription(sdp, type);
    } catch (err) {
      if (this.pc.state() === 'closed') throw closedUnder(type);
      throw new LanternError('LA_ERR_INVALID_REQUEST', `not a usable ${type}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Resolves once ICE, DTLS and SCTP are up and, on the offering side, the control channel is open;
   * LA_ERR_DESTINATION_UNREACHABLE (`details.stage: 'ice'`) if not within `timeoutMs`.
   *
   * (libdatachannel 0.24 opens the channels made before the connection in a task queued when SCTP
   * comes up, just after it reports `connected`; a channel made in between is opened twice, and
   * the peer, seeing a second open on a stream in use, closes it. The control channel opens in that
   * task, so once it is open, a tunnel's channel is opened once. Of channels made at `connected`,
   * 7 in 300 one at a time and 17 to 31 in 120 twenty at a time were closed at once on this
   * machine; none made after the control channel opened.)
   */
  async connected(timeoutMs: number): Promise<void> {
    const up = () => this.#state === 'connected' && this.#controlOpen !== false;
    const settled = await this.#until(() => up() || ENDED_STATES.includes(this.#state), timeoutMs);
    if (settled && up()) return;
    throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `no WebRTC connection to the peer (${settled ? this.#state : `timed out after ${timeoutMs} ms`})`, { details: { stage: 'ice', state: this.#state } });
  }

  /** Which candidate pair carries the connection: `host`, `srflx`, `prflx` or `relay` on each side. */
  selectedPath(): { local: string; remote: string } | undefined {
    try {
      const pair = this.pc.getSelectedCandidatePair();
      return pair ? { local: pair.local.type, remote: pair.remote.type } : undefined;
    } catch {
      return undefined;
    }
  }

  close(): void {
    this.#end();
  }
}

/** The connection closed under us before the remote description could be taken. */
function closedUnder(type: 'offer' | 'answer'): LanternError {
  return new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `the WebRTC connection closed before the ${type} was taken`, { details: { stage: 'ice', state: 'closed' } });
}

/**
 * The DTLS certificate fingerprint a description announces (`a=fingerprint:sha-256 AB:…`),
 * normalized; undefined when there is none or more than one differing.
 */
export function sdpFingerprint(sdp: string): string | undefined {
  const found = new Set<string>();
  for (const m of sdp.matchAll(/^a=fingerprint:(\S+) ([0-9A-Fa-f:]+)\s*$/gm)) found.add(`${m[1]!.toLowerCase()} ${m[2]!.toUpperCase()}`);
  return found.size === 1 ? [...found][0] : undefined;
}

/**
 * What a give peer signs with its identity key for one ICE session: a context string, the
 * session id and its DTLS fingerprint. A get client pins the DTLS connection to the registered
 * identity through this: an answer cannot be replayed into another session, nor carry another
 * certificate, and the server (which never sees the descriptions) cannot stand in for the peer.
 */
export function iceSignedData(session: string, fingerprint: string): Buffer {
  return Buffer.from(`lantern-ice-v1\n${session}\n${fingerprint}`, 'utf8');
}

/** The give peer's signature over its answer's DTLS fingerprint for `session`. */
export function signIceAnswer(identity: { sign(data: Buffer): string }, session: string, answerSdp: string): string {
  const fingerprint = sdpFingerprint(answerSdp);
  if (!fingerprint) throw new LanternError('LA_ERR_INTERNAL', 'the local answer has no single DTLS fingerprint');
  return identity.sign(iceSignedData(session, fingerprint));
}

/**
 * Checks that an answer comes from the registered give peer: its one DTLS fingerprint, for this
 * session, signed by the peer's identity key. LA_ERR_PEER_IDENTITY_MISMATCH otherwise. (The DTLS
 * handshake then proves the peer holds that certificate: libdatachannel checks the fingerprint.)
 */
export function checkIceAnswer(o: { identityKey: string; session: string; answerSdp: string; signature: string }): void {
  const fingerprint = sdpFingerprint(o.answerSdp);
  if (!fingerprint || !verifyIdentitySignature(o.identityKey, iceSignedData(o.session, fingerprint), o.signature)) {
    throw new LanternError('LA_ERR_PEER_IDENTITY_MISMATCH', "the ICE answer's DTLS fingerprint is not signed by the peer's registered identity key for this session");
  }
}

/** How many candidates of each type (host, srflx, relay…) a description carries: what can be logged of it without an address. */
export function candidateTypes(sdp: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of sdp.matchAll(/^a=candidate:.* typ (\w+)/gm)) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  return counts;
}
