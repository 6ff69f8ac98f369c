import { createHash, randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { CanaryMaker } from '../../crypto/canary.js';
import type { TicketIssuer } from '../../crypto/tickets.js';
import type { CertificateAuthority } from '../../crypto/x509/certificate-authority.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import { finish } from '../../net/finish.js';
import { formatUrl, listen } from '../../net/listen.js';
import { acceptSession } from '../../crypto/request-signature.js';
import { checkKeysUpload } from '../../crypto/signal/key-signatures.js';
import {
  AckRequest,
  DeviceId,
  KeysUpload,
  LoginRequest,
  PeerRegistration,
  PollQuery,
  SendBatchRequest,
  SendRequest,
  SessionRequest,
  UserId,
  VerdictRequest,
} from '../../protocol/messages.js';
import type { PeerRecord } from '../../storage/server-store.js';
import { TicketRequest } from '../../protocol/ticket.js';
import { AUTH_SCHEME } from '../../protocol/request-auth.js';
import { parseMessage } from '../../protocol/validate.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../protocol/version.js';
import type { Notifier, ServerStore } from '../../storage/server-store.js';
import { AccountService } from './accounts.js';
import { Authenticator, type AuthContext } from './authenticator.js';
import { ControlSocketServer } from '../../net/control-socket.js';
import { ControlRequest } from '../../protocol/messages.js';
import { CLOSING_ERRORS, EMPTY_BODY, hasBody, parseJson, readBody, sendEmpty, sendError, sendJson } from './http-kit.js';
import { Mailbox } from './mailbox.js';
import type { ServerMetrics } from './metrics.js';
import type { ServerOptions } from './options.js';

export interface ServerComponents {
  store: ServerStore;
  notifier: Notifier;
  clock: Clock;
  logger: Logger;
  ca: CertificateAuthority;
  tickets: TicketIssuer;
  canary: CanaryMaker;
  metrics?: ServerMetrics;
  /** Told of each recorded verdict, with the peer as it now is (the rotation monitor looks again). */
  onVerdict?: (peer: PeerRecord) => void;
  /** Where faults of requests, upgrades and timers are contained (one per server, shared with the broker). */
  faults?: FaultBoundary;
}

/** Deadlines and caps of the API listener; see `defaultListenerLimits`. */
export interface ListenerLimits {
  /** The request line and headers must arrive within this (and a TLS handshake). */
  headerTimeoutMs: number;
  /** The body must arrive within this once the handler starts reading it (a slow upload is cut off). */
  bodyTimeoutMs: number;
  /**
   * A kept-alive connection idle this long between requests is closed (above CDNs' idle timeouts,
   * so the edge closes first); an answer that makes no progress this long (after the longest poll) too.
   */
  idleTimeoutMs: number;
  /** Connections open at once (0: no limit). */
  maxConnections: number;
  /** Connections open at once from one client address (an IPv6 /64 counts as one; 0: no limit). */
  maxConnectionsPerAddress: number;
}

export const defaultListenerLimits: ListenerLimits = {
  headerTimeoutMs: 20_000,
  bodyTimeoutMs: 60_000,
  idleTimeoutMs: 65_000,
  maxConnections: 16_384,
  maxConnectionsPerAddress: 1024,
};

export interface ListenOptions {
  host: string;
  port: number;
  tls?: { certificatePem: string; privateKeyPem: string };
  /** Path of the control socket for `account` commands; none when absent. */
  controlSocketPath?: string;
  /** Other services on the same listener (the PeerJS broker), asked first. */
  attachments?: Attachment[];
  limits?: ListenerLimits;
}

/** A service sharing the API's listener: it takes the requests and upgrades that are its own. */
export interface Attachment {
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean;
  start(): void;
  stop(): Promise<void>;
}

interface RequestInfo {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** Values of the `:name` segments of the route's path. */
  params: Record<string, string>;
  body: Buffer;
  auth: AuthContext | undefined;
}

interface Route {
  /** false: open; true: LA1 or LA1S; 'device': LA1 only (signed with the device key). */
  auth: boolean | 'device';
  handle(r: RequestInfo): Promise<void>;
}

/** The server role: HTTP API v1 (login, whoami, messages), the retention job and the control socket. */
export class LanternServer implements Startable {
  readonly #c: ServerComponents;
  readonly #faults: FaultBoundary;
  readonly #limits: ListenerLimits;
  readonly #connections: ConnectionLimiter;
  readonly #options: ServerOptions;
  readonly #listen: ListenOptions;
  readonly accounts: AccountService;
  readonly #auth: Authenticator;
  readonly #mailbox: Mailbox;
  readonly #routes: Map<string, Map<string, Route>>;
  /** Routes with `:param` segments, tried when no exact path matches. */
  readonly #patterns: Array<{ segments: string[]; byMethod: Map<string, Route> }> = [];
  #http: Server | undefined;
  #control: ControlSocketServer | undefined;
  #expireTimer: ReturnType<typeof setInterval> | undefined;
  #url: string | undefined;
  #stopped: Promise<void> | undefined;

  constructor(components: ServerComponents, options: ServerOptions, listenOptions: ListenOptions) {
    this.#c = components;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#limits = listenOptions.limits ?? defaultListenerLimits;
    this.#connections = new ConnectionLimiter({ maxTotal: this.#limits.maxConnections, maxPerAddress: this.#limits.maxConnectionsPerAddress });
    this.#options = options;
    this.#listen = listenOptions;
    this.accounts = new AccountService(components);
    this.#auth = new Authenticator(components);
    this.#mailbox = new Mailbox({ ...components, faults: this.#faults }, options);
    this.#routes = this.#buildRoutes();
  }

  /** Base URL once started, with the real port. */
  get url(): string {
    if (!this.#url) throw new Error('server is not started');
    return this.#url;
  }

  get heldPolls(): number {
    return this.#mailbox.heldPolls;
  }

  /** Connections closed at once because a connection cap was reached. */
  get overCapacity(): number {
    return this.#connections.refused;
  }

  async start(): Promise<void> {
    const attachments = this.#listen.attachments ?? [];
    const faults = this.#faults;
    // Every request and upgrade runs inside a boundary: a fault answers 500 (or drops the
    // connection) and the server goes on.
    const handler = faults.wrap(
      'request',
      (req: IncomingMessage, res: ServerResponse) => {
        for (const a of attachments) if (a.handleRequest(req, res)) return;
        return this.#handle(req, res);
      },
      (_err, _req, res) => this.#internalError(res),
    );
    const limits = this.#limits;
    const http = {
      connectionsCheckingInterval: 1000,
      headersTimeout: limits.headerTimeoutMs,
      requestTimeout: limits.headerTimeoutMs + limits.bodyTimeoutMs,
      keepAliveTimeout: limits.idleTimeoutMs,
    };
    const tls = this.#listen.tls;
    const server = tls
      ? createHttpsServer({ ...http, cert: tls.certificatePem, key: tls.privateKeyPem, handshakeTimeout: limits.headerTimeoutMs }, handler)
      : createHttpServer(http, handler);
    server.keepAliveTimeout = limits.idleTimeoutMs;
    // No progress on a connection (a client that never reads its answer) for this long closes it.
    server.timeout = Math.max(limits.idleTimeoutMs, this.#options.maxPollWaitSeconds * 1000 + 15_000);
    server.on('connection', (socket: Socket) => void this.#connections.admit(socket));
    server.on('clientError', (_err, socket) => finish(socket, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'));
    server.on(
      'upgrade',
      faults.wrap(
        'upgrade',
        (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          socket.on('error', () => socket.destroy());
          for (const a of attachments) if (a.handleUpgrade(req, socket, head)) return;
          finish(socket, 'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        },
        (_err, _req, socket) => socket.destroy(),
      ),
    );
    const addr = await listen(server, this.#listen.host, this.#listen.port);
    for (const a of attachments) a.start();
    this.#http = server;
    this.#url = formatUrl(tls ? 'https' : 'http', addr.host, addr.port);
    if (this.#listen.controlSocketPath) {
      this.#control = new ControlSocketServer({ logger: this.#c.logger, faults }, this.#listen.controlSocketPath, async (value) => {
        const req = parseMessage(ControlRequest, value);
        return req.op === 'account.add' ? this.accounts.add(req.name, req.role, req.password) : this.accounts.revoke(req.name, req.deviceId);
      });
      await this.#control.start();
    }
    this.#expireTimer = setInterval(faults.wrap('timer', () => this.runRetention()), this.#options.expireIntervalMs);
    this.#expireTimer.unref();
    void this.runRetention();
  }

  /** One pass of the retention job (also run on a timer). */
  async runRetention(): Promise<number> {
    try {
      const { messages } = await this.#c.store.expire(this.#c.clock.now());
      if (messages > 0) this.#c.logger.info({ messages }, 'expired undelivered messages');
      return messages;
    } catch (err) {
      this.#c.logger.warn({ err }, 'retention job failed');
      return 0;
    }
  }

  /** Stops accepting, answers held polls, waits for requests in flight. Idempotent. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      if (this.#expireTimer) clearInterval(this.#expireTimer);
      // WebSockets first: they would hold the listener open.
      for (const a of this.#listen.attachments ?? []) await a.stop();
      const server = this.#http;
      const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      this.#mailbox.releaseAll();
      server?.closeIdleConnections();
      const force = setTimeout(() => server?.closeAllConnections(), 5000);
      await closed;
      clearTimeout(force);
      await this.#control?.stop();
    })();
    return this.#stopped;
  }

  #buildRoutes(): Map<string, Map<string, Route>> {
    const routes = new Map<string, Map<string, Route>>();
    const add = (method: string, path: string, route: Route) => {
      if (path.includes('/:')) {
        const segments = path.split('/');
        let entry = this.#patterns.find((p) => p.segments.join('/') === path);
        if (!entry) this.#patterns.push((entry = { segments, byMethod: new Map() }));
        entry.byMethod.set(method, route);
        return;
      }
      if (!routes.has(path)) routes.set(path, new Map());
      routes.get(path)!.set(method, route);
    };
    add('GET', '/v1/health', {
      auth: false,
      handle: async ({ res }) => sendJson(res, 200, { ok: true, version: PROTOCOL_VERSION }),
    });
    add('POST', '/v1/login', {
      auth: false,
      handle: async ({ req, res, body }) => {
        const login = parseMessage(LoginRequest, parseJson(body));
        await this.#limit(`login-addr:${req.socket.remoteAddress ?? '?'}`, this.#options.rate.loginPerAddress);
        await this.#limit(`login-name:${login.user}`, this.#options.rate.loginPerAccount);
        const answer = await this.accounts.login(login, { ca: this.#c.ca, options: this.#options });
        sendJson(res, 200, answer);
      },
    });
    add('POST', '/v1/session', {
      auth: 'device',
      handle: async ({ res, body, auth }) => {
        const offer = parseMessage(SessionRequest, parseJson(body));
        const id = randomUUID();
        const { publicKey, key } = acceptSession(offer.publicKey, id);
        const expiresAt = Math.min(auth!.certificateExpires, this.#c.clock.now() + this.#options.sessionLifetimeMs);
        await this.#c.store.putSession({ id, userId: auth!.userId, deviceId: auth!.deviceId, key, expiresAt });
        sendJson(res, 200, { sessionId: id, publicKey, expiresAt });
      },
    });
    add('PUT', '/v1/keys', {
      auth: true,
      handle: async ({ res, body, auth }) => {
        const upload = parseMessage(KeysUpload, parseJson(body));
        checkKeysUpload(upload);
        // The device comes from the credential, never from the body.
        await this.#c.store.putKeys({ userId: auth!.userId, deviceId: auth!.deviceId }, upload);
        sendJson(res, 200, await this.#c.store.keyCounts({ userId: auth!.userId, deviceId: auth!.deviceId }));
      },
    });
    add('GET', '/v1/keys/count', {
      auth: true,
      handle: async ({ res, auth }) => sendJson(res, 200, await this.#c.store.keyCounts({ userId: auth!.userId, deviceId: auth!.deviceId })),
    });
    const bundles = async ({ res, params, auth }: RequestInfo) => {
      const userId = parseMessage(UserId, params['userId']);
      const only = params['deviceId'] === undefined ? undefined : parseMessage(DeviceId, Number(params['deviceId']));
      const targets =
        only !== undefined
          ? [only]
          : (await this.#c.store.registrations(userId))
              .map((r) => r.deviceId)
              .filter((d) => !(userId === auth!.userId && d === auth!.deviceId));
      if (only === undefined && targets.length === 0 && (await this.#c.store.listDevices(userId)).length === 0) {
        throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No such user');
      }
      const now = this.#c.clock.now();
      for (const deviceId of targets) {
        const r = await this.#c.store.takeTokens(`prekeys:${auth!.userId}:${auth!.deviceId}>${userId}:${deviceId}`, 1, this.#options.rate.prekeyFetch, now);
        if (!r.ok) throw new LanternError('LA_ERR_RATE_LIMITED', 'Too many key fetches for this device', { details: { retryAfterMs: r.retryAfterMs } });
      }
      const devices = [];
      for (const deviceId of targets) {
        const device = await this.#c.store.getDevice(userId, deviceId);
        const bundle = device && device.revokedAt === undefined ? await this.#c.store.takeBundle({ userId, deviceId }) : undefined;
        if (bundle) devices.push(bundle);
        else if (only !== undefined) throw new LanternError('LA_ERR_NO_KEYS');
      }
      sendJson(res, 200, { userId, devices });
    };
    add('GET', '/v1/keys/:userId', { auth: true, handle: bundles });
    add('GET', '/v1/keys/:userId/:deviceId', { auth: true, handle: bundles });
    add('POST', '/v1/tickets', {
      auth: true,
      handle: async ({ res, auth, body }) => {
        const { aud, peer } = body.length ? parseMessage(TicketRequest, parseJson(body)) : {};
        if (aud !== 'peerjs' && peer === undefined) {
          throw new LanternError('LA_ERR_INVALID_REQUEST', 'A proxy ticket is for one give peer: send {"peer": "<its fingerprint>"}');
        }
        const expiresAt = Math.min(this.#c.clock.now() + this.#options.ticketLifetimeMs, auth!.certificateExpires);
        const claims = aud === 'peerjs' ? { v: 1 as const, sub: auth!.userId, exp: expiresAt, aud } : { v: 1 as const, sub: auth!.userId, exp: expiresAt, aud: peer! };
        sendJson(res, 200, { ticket: this.#c.tickets.issue(claims), expiresAt });
      },
    });
    add('GET', '/v1/tickets/key', {
      auth: false,
      handle: async ({ res }) => sendJson(res, 200, { publicKey: this.#c.tickets.publicKeyPem }),
    });
    const peerInfo = ({ userId: _u, deviceId: _d, ...info }: PeerRecord) => info;
    const self = (auth: AuthContext | undefined) => ({ userId: auth!.userId, deviceId: auth!.deviceId });
    add('POST', '/v1/peers', {
      auth: true,
      handle: async ({ req, res, body, auth }) => {
        const reg = parseMessage(PeerRegistration, parseJson(body));
        // The address is the connection's, never a header's: a registration cannot point elsewhere.
        const host = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, '');
        // One live registration per identity key: nobody can register a relay to someone else's peer under its key.
        const now = this.#c.clock.now();
        const taken = (await this.#c.store.listPeers(now)).find((p) => p.identityKey === reg.identityKey && !(p.userId === auth!.userId && p.deviceId === auth!.deviceId));
        if (taken) throw new LanternError('LA_ERR_PEER_IDENTITY_TAKEN');
        const record = await this.#c.store.registerPeer(
          {
            ...self(auth),
            host,
            port: reg.port,
            protocols: reg.protocols,
            identityKey: reg.identityKey,
            ...(reg.plaintext ? { plaintext: true } : {}),
            ...(reg.sniName ? { sniName: reg.sniName } : {}),
            ...(reg.publicAddr ? { publicAddrHint: reg.publicAddr } : {}),
          },
          this.#c.clock.now(),
          this.#options.peerTtlMs,
        );
        this.#c.logger.info({ peerId: record.peerId }, 'give peer registered');
        sendJson(res, 200, peerInfo(record));
      },
    });
    add('POST', '/v1/peers/heartbeat', {
      auth: true,
      handle: async ({ res, auth }) => {
        const record = await this.#c.store.heartbeatPeer(self(auth), this.#c.clock.now(), this.#options.peerTtlMs);
        if (!record) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
        sendJson(res, 200, peerInfo(record));
      },
    });
    add('GET', '/v1/peers/self', {
      auth: true,
      handle: async ({ res, auth }) => {
        const mine = (await this.#c.store.listPeers(this.#c.clock.now())).find((p) => p.userId === auth!.userId && p.deviceId === auth!.deviceId);
        if (!mine) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
        sendJson(res, 200, peerInfo(mine));
      },
    });
    add('GET', '/v1/peers/round-robin', {
      auth: true,
      handle: async ({ res }) => {
        // Get clients only ever receive verified peers.
        const verified = (await this.#c.store.listPeers(this.#c.clock.now())).filter((p) => p.state === 'verified');
        sendJson(res, 200, { peers: verified.map(({ host, port, protocols, identityKey, sniName }) => ({ host, port, protocols, identityKey, ...(sniName ? { sniName } : {}) })) });
      },
    });
    add('POST', '/v1/canary', {
      auth: true,
      handle: async ({ res, auth }) => {
        await this.#requireVerifier(auth!);
        const nonce = CanaryMaker.newNonce();
        const content = this.#c.canary.content(nonce);
        sendJson(res, 200, { nonce, path: `/v1/canary/${nonce}`, length: content.length, sha256: createHash('sha256').update(content).digest('hex') });
      },
    });
    add('GET', '/v1/canary/:nonce', {
      auth: false,
      handle: async ({ res, params }) => {
        if (!/^[0-9a-f]{32}$/.test(params['nonce']!)) throw new LanternError('LA_ERR_NOT_FOUND');
        const content = this.#c.canary.content(params['nonce']!);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': content.length, 'cache-control': 'no-store' });
        res.end(content);
      },
    });
    add('GET', '/v1/peers', {
      auth: true,
      handle: async ({ res, auth }) => {
        await this.#requireVerifier(auth!);
        sendJson(res, 200, { peers: (await this.#c.store.listPeers(this.#c.clock.now())).map(peerInfo) });
      },
    });
    add('POST', '/v1/peers/:peerId/verdict', {
      auth: true,
      handle: async ({ res, params, body, auth }) => {
        await this.#requireVerifier(auth!);
        const verdict = parseMessage(VerdictRequest, parseJson(body));
        const now = this.#c.clock.now();
        const record = await this.#c.store.recordVerdict(params['peerId']!, { ...verdict, at: now }, now, this.#options.peerPauseAfterMs);
        if (!record) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED', 'No live peer with that id');
        this.#c.metrics?.verdicts.inc({ result: verdict.ok ? 'pass' : 'fail' });
        this.#c.onVerdict?.(record);
        sendJson(res, 200, peerInfo(record));
      },
    });
    add('DELETE', '/v1/peers', {
      auth: true,
      handle: async ({ res, auth }) => sendJson(res, 200, { unregistered: await this.#c.store.unregisterPeer(self(auth)) }),
    });
    add('GET', '/v1/whoami', {
      auth: true,
      handle: async ({ res, auth }) => {
        const account = await this.#c.store.getAccountByUserId(auth!.userId);
        sendJson(res, 200, {
          userId: auth!.userId,
          deviceId: auth!.deviceId,
          role: account?.role ?? 'user',
          certificateExpires: auth!.certificateExpires,
        });
      },
    });
    add('POST', '/v1/messages', {
      auth: true,
      handle: async ({ res, body, auth }) => {
        const send = parseMessage(SendRequest, parseJson(body));
        sendJson(res, 200, await this.#mailbox.send(auth!, send));
      },
    });
    add('POST', '/v1/messages/batch', {
      auth: true,
      handle: async ({ res, body, auth }) => {
        const batch = parseMessage(SendBatchRequest, parseJson(body));
        const results = await Promise.all(
          batch.messages.map((m) =>
            this.#mailbox.send(auth!, m).then(
              (r) => ({ id: m.id, devices: r.devices }),
              (err: unknown) => {
                if (!LanternError.is(err) || err.code.startsWith('LA_ERR_STORE')) throw err;
                return { id: m.id, error: { code: err.code, message: err.message } };
              },
            ),
          ),
        );
        sendJson(res, 200, { results });
      },
    });
    add('GET', '/v1/messages', {
      auth: true,
      handle: async ({ res, url, auth }) => {
        const q = parseMessage(PollQuery, Object.fromEntries(url.searchParams));
        const device = { userId: auth!.userId, deviceId: auth!.deviceId };
        if (q.ack?.length) await this.#mailbox.ack(device, q.ack);
        const held = await this.#mailbox.poll(device, q.wait, q.limit, (batch, error) => {
          if (error !== undefined) this.#fail(res, error);
          else if (batch) sendJson(res, 200, batch);
          else sendEmpty(res, 204);
        });
        res.once('close', held.cancel);
      },
    });
    add('POST', '/v1/messages/ack', {
      auth: true,
      handle: async ({ res, body, auth }) => {
        const ack = parseMessage(AckRequest, parseJson(body));
        const acked = await this.#mailbox.ack({ userId: auth!.userId, deviceId: auth!.deviceId }, ack.ids);
        sendJson(res, 200, { acked });
      },
    });
    return routes;
  }

  /** Only verifier accounts may read candidates and post verdicts. */
  async #requireVerifier(auth: AuthContext): Promise<void> {
    const account = await this.#c.store.getAccountByUserId(auth.userId);
    if (account?.role !== 'verifier') throw new LanternError('LA_ERR_FORBIDDEN', 'Only verifier accounts may do this');
  }

  async #limit(key: string, policy: ServerOptions['rate']['pair']): Promise<void> {
    const r = await this.#c.store.takeTokens(key, 1, policy, this.#c.clock.now());
    if (!r.ok) throw new LanternError('LA_ERR_RATE_LIMITED', undefined, { details: { retryAfterMs: r.retryAfterMs } });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://server.invalid');
      const params: Record<string, string> = {};
      const byMethod = this.#routes.get(url.pathname) ?? this.#matchPattern(url.pathname, params);
      if (!byMethod) throw new LanternError('LA_ERR_NOT_FOUND');
      const route = byMethod.get(req.method ?? 'GET');
      if (!route) throw new LanternError('LA_ERR_METHOD_NOT_ALLOWED', `Use ${[...byMethod.keys()].join(' or ')}`);
      const version = req.headers[VERSION_HEADER];
      // Health and canaries are plain public resources (canaries are fetched through give peers).
      if (url.pathname !== '/v1/health' && !url.pathname.startsWith('/v1/canary/') && version !== String(PROTOCOL_VERSION)) {
        throw new LanternError(
          'LA_ERR_VERSION_MISMATCH',
          `This server speaks protocol ${PROTOCOL_VERSION}; send ${VERSION_HEADER}: ${PROTOCOL_VERSION}`,
        );
      }
      const body = hasBody(req) ? await readBody(req, { deadlineMs: this.#limits.bodyTimeoutMs }) : EMPTY_BODY;
      const auth = route.auth
        ? await this.#auth.authenticate({
            method: req.method ?? 'GET',
            path: req.url ?? '/',
            authorization: req.headers.authorization,
            body,
          })
        : undefined;
      if (route.auth === 'device' && auth?.scheme !== AUTH_SCHEME) {
        throw new LanternError('LA_ERR_AUTH_REQUIRED', 'This request must be signed with the device key (LA1)');
      }
      await route.handle({ req, res, url, params, body, auth });
    } catch (err) {
      // Anything but a LanternError is a fault: the request boundary answers 500 and counts it.
      if (!LanternError.is(err)) throw err;
      this.#fail(res, err);
    }
  }

  /** The answer to a request whose handler faulted (the fault is logged and counted by the boundary). */
  #internalError(res: ServerResponse): void {
    this.#c.metrics?.errors.inc({ code: 'LA_ERR_INTERNAL' });
    if (res.headersSent) res.destroy();
    else sendError(res, new LanternError('LA_ERR_INTERNAL'));
  }

  #matchPattern(pathname: string, params: Record<string, string>): Map<string, Route> | undefined {
    const parts = pathname.split('/');
    for (const { segments, byMethod } of this.#patterns) {
      if (segments.length !== parts.length) continue;
      const found: Record<string, string> = {};
      const matches = segments.every((seg, i) => {
        if (!seg.startsWith(':')) return seg === parts[i];
        try {
          found[seg.slice(1)] = decodeURIComponent(parts[i]!);
        } catch {
          return false;
        }
        return parts[i] !== '';
      });
      if (matches) {
        Object.assign(params, found);
        return byMethod;
      }
    }
    return undefined;
  }

  #fail(res: ServerResponse, err: unknown): void {
    const code = LanternError.is(err) ? err.code : 'LA_ERR_INTERNAL';
    this.#c.metrics?.errors.inc({ code });
    if (code === 'LA_ERR_RATE_LIMITED') this.#c.metrics?.rateLimitHits.inc();
    if (LanternError.is(err)) {
      if (err.code.startsWith('LA_ERR_STORE')) this.#c.logger.error({ err }, 'storage failure');
      else if (CLOSING_ERRORS.has(err.code)) this.#c.logger.debug({ code: err.code }, 'request cut off');
      sendError(res, err);
    } else {
      this.#c.logger.error({ err }, 'request failed');
      sendError(res, new LanternError('LA_ERR_INTERNAL'));
    }
  }
}
