import { API, apiPath } from '../protocol/api-paths.js';
import { isIP } from 'node:net';
import { Agent, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { LanternError, isErrorCode } from '../core/errors.js';
import {
  AckResponse,
  BundlesResponse,
  ErrorBody,
  KeyCounts,
  PeerInfo,
  PeersResponse,
  CanaryResponse,
  type VerdictRequest,
  RoundRobinResponse,
  type RoundRobinPeer,
  UnregisterPeerResponse,
  LoginResponse,
  PollResponse,
  SendBatchResponse,
  SendResponse,
  PeerReportResponse,
  ProbeRequestsResponse,
  SessionResponse,
  WhoamiResponse,
  HealthResponse,
  ReachabilityResponse,
  IceServersResponse,
  type KeysUpload,
  type PeerRegistration,
  type LoginRequest,
  type SendRequest,
} from '../protocol/messages.js';
import { TicketKeyResponse, TicketResponse, type TicketAudience } from '../protocol/ticket.js';
import { KEYS_HEADER, PROTOCOL_VERSION, VERSION_HEADER } from '../protocol/version.js';
import { parseHostPort } from './listen.js';

/** An LA1S session as the client keeps it (key base64). */
export interface ClientSession {
  id: string;
  key: string;
  expiresAt: number;
}

/** Request authentication (implemented by crypto/request-signature.ts RequestSigner). */
export interface ClientAuth {
  /** LA1 header, signed with the device key. */
  authorize(method: string, path: string, body: string, now: number): string;
  /** Starts a session handshake. */
  beginSession(): { publicKey: string; finish(serverPublicKey: string, id: string, expiresAt: number): ClientSession };
  /** LA1S header under a session. */
  authorizeWithSession(session: ClientSession, method: string, path: string, body: string, now: number): string;
}

export interface ApiClientComponents {
  clock: Clock;
  auth?: ClientAuth;
  /** A session kept from an earlier run, reused while it lasts. */
  session?: ClientSession;
  /** Called with each new session (to keep it for the next run). */
  onSession?: (session: ClientSession) => void | Promise<void>;
  /** Sign every request with the device key instead of opening a session (default false). */
  deviceSignatures?: boolean;
}

export interface ApiClientOptions {
  /** Base URL of the server, e.g. https://signal.example:8443 */
  server: string;
  /** Extra CA certificates (PEM) to trust for the server's TLS. */
  ca?: string;
  /**
   * Domain fronting: HOST[:PORT] to dial and to send TLS SNI (and check the certificate) for, while
   * the Host header names `server`. A CDN in front routes by the Host header.
   */
  front?: string;
  dispatcher?: Dispatcher;
}

/** Makes the undici dispatcher for talking to one server (the one place that creates Agents). */
export function createDispatcher(options: { ca?: string } = {}): Agent {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 64,
    ...(options.ca ? { connect: { ca: options.ca } } : {}),
  });
}

/** Client of the server HTTP API v1. Every answer is validated against its schema. */
export class ApiClient {
  readonly server: string;
  /** Where requests go: the server, or the front. */
  readonly #origin: string;
  readonly #host: string | undefined;
  /** TLS SNI when fronting (undici would otherwise take it from the Host header). */
  readonly #servername: string | undefined;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #clock: Clock;
  readonly #c: ApiClientComponents;
  #session: ClientSession | undefined;
  #opening: Promise<ClientSession> | undefined;
  #keysLow = false;

  constructor(components: ApiClientComponents, options: ApiClientOptions) {
    this.server = options.server.replace(/\/+$/, '');
    const url = new URL(this.server);
    if (options.front) {
      const front = parseHostPort(options.front) ?? (/^[A-Za-z0-9.-]+$/.test(options.front) ? { host: options.front, port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)) } : undefined);
      if (!front) throw new LanternError('LA_ERR_USAGE', `--front ${options.front}: expected HOST or HOST:PORT`);
      this.#origin = `${url.protocol}//${front.host.includes(':') ? `[${front.host}]` : front.host}:${front.port}`;
      this.#host = url.host;
      // An IP address is never sent as SNI.
      this.#servername = isIP(front.host) ? undefined : front.host;
    } else {
      this.#origin = this.server;
      this.#host = undefined;
      this.#servername = undefined;
    }
    this.#clock = components.clock;
    this.#c = components;
    this.#session = components.session;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher = options.dispatcher ?? createDispatcher(options.ca ? { ca: options.ca } : {});
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  login(body: LoginRequest): Promise<LoginResponse> {
    return this.#call('POST', API.login, body, LoginResponse, { auth: 'none' });
  }

  /** The session requests are MACed with, opened (LA1-signed handshake) when missing or ending. */
  session(): Promise<ClientSession> {
    const current = this.#session;
    if (current && current.expiresAt - this.#clock.now() > 60_000) return Promise.resolve(current);
    this.#opening ??= (async () => {
      try {
        const auth = this.#c.auth;
        if (!auth) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
        const offer = auth.beginSession();
        const answer = await this.#call('POST', API.session, { publicKey: offer.publicKey }, SessionResponse, { auth: 'device' });
        const session = offer.finish(answer.publicKey, answer.sessionId, answer.expiresAt);
        this.#session = session;
        await this.#c.onSession?.(session);
        return session;
      } finally {
        this.#opening = undefined;
      }
    })();
    return this.#opening;
  }

  /** GET /v1/health (unsigned): the server's protocol version and clock. */
  health(): Promise<z.infer<typeof HealthResponse>> {
    return this.#call('GET', API.health, undefined, HealthResponse, { auth: 'none' });
  }

  whoami(): Promise<z.infer<typeof WhoamiResponse>> {
    return this.#call('GET', API.whoami, undefined, WhoamiResponse);
  }

  send(body: SendRequest): Promise<SendResponse> {
    return this.#call('POST', API.messages, body, SendResponse);
  }

  /** Uploads this device's keys; answers the one-time key counts. */
  putKeys(keys: KeysUpload): Promise<KeyCounts> {
    return this.#call('PUT', API.keys, keys, KeyCounts);
  }

  keyCounts(): Promise<KeyCounts> {
    return this.#call('GET', API.keyCount, undefined, KeyCounts);
  }

  /** Bundles of every registered device of `userId` (or one device), each popping one-time keys. */
  bundles(userId: string, deviceId?: number): Promise<BundlesResponse> {
    return this.#call('GET', deviceId === undefined ? apiPath(API.bundles, { userId }) : apiPath(API.bundle, { userId, deviceId }), undefined, BundlesResponse);
  }

  /** Registers this device's give proxy (the server takes the address from the connection). */
  registerPeer(registration: PeerRegistration): Promise<PeerInfo> {
    return this.#call('POST', API.peers, registration, PeerInfo);
  }

  heartbeatPeer(): Promise<PeerInfo> {
    return this.#call('POST', API.peerHeartbeat, undefined, PeerInfo);
  }

  /** The verified round robin. */
  async roundRobin(): Promise<RoundRobinPeer[]> {
    return (await this.#call('GET', API.roundRobin, undefined, RoundRobinResponse)).peers;
  }

  /** A fresh canary to fetch through a peer (verifier accounts only). */
  canary(): Promise<CanaryResponse> {
    return this.#call('POST', API.canary, undefined, CanaryResponse);
  }

  /** Every live registration (verifier accounts only). */
  async peers(): Promise<PeerInfo[]> {
    return (await this.#call('GET', API.peers, undefined, PeersResponse)).peers;
  }

  /**
   * The peers to probe now (verifier accounts only): held up to `waitSeconds` until one is asked
   * for; pass the answer's `now` as the next `since`.
   */
  probeRequests(since: number | undefined, waitSeconds: number, signal?: AbortSignal): Promise<ProbeRequestsResponse> {
    const query = `?wait=${waitSeconds}${since === undefined ? '' : `&since=${since}`}`;
    return this.#call('GET', `${API.probeRequests}${query}`, undefined, ProbeRequestsResponse, { timeoutMs: (waitSeconds + 30) * 1000, ...(signal ? { signal } : {}) });
  }

  /** Tells the server a give peer failed this client (it asks a verifier to probe it); true if counted. */
  async reportPeer(identityKey: string, status: string): Promise<boolean> {
    return (await this.#call('POST', API.peerReport, { identityKey, status }, PeerReportResponse)).accepted;
  }

  /** Posts a verification verdict about a peer (verifier accounts only). */
  verdict(peerId: string, verdict: VerdictRequest): Promise<PeerInfo> {
    return this.#call('POST', apiPath(API.verdict, { peerId }), verdict, PeerInfo);
  }

  /**
   * This device's registration. With `wait`: held by the server (up to `wait.seconds`) until a
   * verdict newer than `wait.after` (server ms; the last verdict seen) is recorded.
   */
  peerSelf(wait?: { seconds: number; after: number; signal?: AbortSignal }): Promise<PeerInfo> {
    if (!wait) return this.#call('GET', API.peerSelf, undefined, PeerInfo);
    return this.#call('GET', `${API.peerSelf}?wait=${wait.seconds}&after=${wait.after}`, undefined, PeerInfo, { timeoutMs: (wait.seconds + 30) * 1000, ...(wait.signal ? { signal: wait.signal } : {}) });
  }

  /** Asks the server to dial this device's give peer at its registered address (TLS, pinned). */
  checkReachability(): Promise<ReachabilityResponse> {
    return this.#call('POST', API.peerReachability, undefined, ReachabilityResponse);
  }

  /** The STUN and TURN servers to traverse NAT with (a TURN credential minted for this user). */
  iceServers(): Promise<IceServersResponse> {
    return this.#call('GET', API.iceServers, undefined, IceServersResponse);
  }

  async unregisterPeer(): Promise<boolean> {
    return (await this.#call('DELETE', API.peers, undefined, UnregisterPeerResponse)).unregistered;
  }

  /** A short-lived ticket: for one give peer (its fingerprint), or for registering an id with the PeerJS broker. */
  ticket(request: { peer: string } | { aud: TicketAudience }): Promise<TicketResponse> {
    return this.#call('POST', API.tickets, request, TicketResponse);
  }

  /** The server's ticket public key (SPKI PEM), which give peers check tickets against. */
  async ticketKey(): Promise<string> {
    return (await this.#call('GET', API.ticketKey, undefined, TicketKeyResponse, { auth: 'none' })).publicKey;
  }

  /** Several sends in one request; one result per message, in order. */
  sendBatch(messages: SendRequest[]): Promise<SendBatchResponse> {
    return this.#call('POST', API.messageBatch, { messages }, SendBatchResponse);
  }

  /**
   * Long-polls; `undefined` when the wait ended with nothing (204). `ack` (ids of the last batch,
   * once stored) is acked first, in the same request.
   */
  poll(waitSeconds: number, limit = 100, signal?: AbortSignal, ack: readonly string[] = []): Promise<PollResponse | undefined> {
    const acks = ack.length ? `&ack=${ack.map(encodeURIComponent).join(',')}` : '';
    return this.#call('GET', `${API.messages}?wait=${waitSeconds}&limit=${limit}${acks}`, undefined, PollResponse, {
      timeoutMs: (waitSeconds + 30) * 1000,
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Whether a poll answer since the last call said that this device's one-time keys run low (the
   * server's sign to upload more; see Inbox.topUp). Reading it clears it.
   */
  takeKeysLow(): boolean {
    const low = this.#keysLow;
    this.#keysLow = false;
    return low;
  }

  ack(ids: string[]): Promise<number> {
    return this.#call('POST', API.ack, { ids }, AckResponse).then((r) => r.acked);
  }

  async #call<S extends z.ZodType>(
    method: string,
    path: string,
    body: unknown,
    schema: S,
    opts: { auth?: 'none' | 'device' | 'default'; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<z.output<S>> {
    const mode = opts.auth ?? 'default';
    const useSession = mode === 'default' && !this.#c.deviceSignatures;
    try {
      return await this.#send(method, path, body, schema, opts, useSession ? await this.session() : undefined);
    } catch (err) {
      // The server forgot the session (expired, device renewed): open a new one and try once more.
      if (!useSession || !LanternError.is(err, 'LA_ERR_AUTH_SESSION_EXPIRED')) throw err;
      this.#session = undefined;
      return this.#send(method, path, body, schema, opts, await this.session());
    }
  }

  async #send<S extends z.ZodType>(
    method: string,
    path: string,
    body: unknown,
    schema: S,
    opts: { auth?: 'none' | 'device' | 'default'; timeoutMs?: number; signal?: AbortSignal },
    session: ClientSession | undefined,
  ): Promise<z.output<S>> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string> = { [VERSION_HEADER]: String(PROTOCOL_VERSION) };
    if (this.#host) headers['host'] = this.#host;
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (opts.auth !== 'none') {
      const auth = this.#c.auth;
      if (!auth) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
      const now = this.#clock.now();
      headers['authorization'] = session
        ? auth.authorizeWithSession(session, method, path, text, now)
        : auth.authorize(method, path, text, now);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.#origin}${path}`, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: body === undefined ? null : text,
        dispatcher: this.#dispatcher,
        ...(this.#servername ? { servername: this.#servername } : {}),
        headersTimeout: opts.timeoutMs ?? 30_000,
        bodyTimeout: opts.timeoutMs ?? 30_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      if ((err as { name?: string }).name === 'AbortError') throw err;
      const via = this.#host ? ` through ${this.#origin}` : '';
      throw new LanternError('LA_ERR_SERVER_UNREACHABLE', `Cannot reach ${this.server}${via}: ${(err as Error).message}`, { cause: err });
    }
    const raw = await res.body.text().catch(() => '');
    if (res.headers[KEYS_HEADER] === 'low') this.#keysLow = true;
    if (res.statusCode === 204) return undefined as z.output<S>;
    let json: unknown;
    try {
      json = raw ? JSON.parse(raw) : undefined;
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) {
      const parsed = ErrorBody.safeParse(json);
      if (parsed.success && isErrorCode(parsed.data.error.code)) {
        const details: Record<string, unknown> = { ...parsed.data.error.details, status: res.statusCode };
        const retry = res.headers['retry-after'];
        if (typeof retry === 'string') details['retryAfterMs'] ??= Number(retry) * 1000;
        throw new LanternError(parsed.data.error.code, parsed.data.error.message, { details });
      }
      throw new LanternError('LA_ERR_SERVER_RESPONSE', `Server answered ${res.statusCode}`, { details: { status: res.statusCode } });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new LanternError('LA_ERR_SERVER_RESPONSE', `Server answer to ${method} ${path} does not match the protocol`);
    }
    return parsed.data;
  }
}
