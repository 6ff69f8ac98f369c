import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import Router from 'find-my-way';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import type { CanaryMaker } from '../../crypto/canary.js';
import type { TicketIssuer } from '../../crypto/tickets.js';
import type { CertificateAuthority } from '../../crypto/x509/certificate-authority.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import { finish } from '../../net/finish.js';
import { formatUrl, listen } from '../../net/listen.js';
import type { PeerRecord } from '../../storage/server-store.js';
import { AUTH_SCHEME } from '../../protocol/request-auth.js';
import { parseMessage } from '../../protocol/validate.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../protocol/version.js';
import { UNVERSIONED_PREFIXES } from '../../protocol/api-paths.js';
import { ClientAddresses } from './client-address.js';
import { PeerSignals, PROBE_CHANNEL, VERDICT_CHANNEL } from './peer-signals.js';
import { KeyService } from './key-service.js';
import { apiRoutes, type Route, type RouteContext } from './routes/index.js';
import type { Method } from './routes/route.js';
import type { Notifier, ServerStore } from '../../storage/server-store.js';
import { AccountService } from './accounts.js';
import { Authenticator, type AuthContext } from './authenticator.js';
import { ControlSocketServer } from '../../net/control-socket.js';
import { ControlRequest } from '../../protocol/messages.js';
import { CLOSING_ERRORS, EMPTY_BODY, hasBody, readBody, sendError } from './http-kit.js';
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
  /** Keys the hash that names client networks in limit keys (the data dir's address-key; default: one per process). */
  addressKey?: Buffer;
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

const METHODS: readonly Method[] = ['GET', 'POST', 'PUT', 'DELETE'];

/** Requests one connection may have in progress at once (a browser pipelines none). */
const MAX_PIPELINED = 32;

/** The server role: HTTP API v1 (login, whoami, messages), the retention job and the control socket. */
export class LanternServer implements Startable {
  readonly #c: ServerComponents;
  readonly #faults: FaultBoundary;
  readonly #limits: ListenerLimits;
  readonly #connections: ConnectionLimiter;
  readonly #options: ServerOptions;
  /** Who a request comes from (behind trusted proxies, the address they name): logged, scrubbed unless --unsafe-logging. */
  readonly #clients: ClientAddresses;
  /** Requests in progress per connection (see #overPipelined). */
  readonly #inFlight = new WeakMap<object, number>();
  /** Peers to probe now (registered, reported), for verifiers long-polling any server instance. */
  readonly #probes: PeerSignals;
  readonly #verdicts: PeerSignals;
  readonly #listen: ListenOptions;
  readonly accounts: AccountService;
  readonly #auth: Authenticator;
  readonly #mailbox: Mailbox;
  /** The API's routes (routes/), by method and path. */
  readonly #router = Router({ caseSensitive: true, ignoreTrailingSlash: false });
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
    this.#clients = new ClientAddresses(options.clientAddress, components.addressKey ?? randomBytes(32));
    this.#probes = new PeerSignals(components, PROBE_CHANNEL);
    this.#verdicts = new PeerSignals(components, VERDICT_CHANNEL);
    const context: RouteContext = {
      c: components,
      options,
      accounts: this.accounts,
      mailbox: this.#mailbox,
      keys: new KeyService(components, options),
      clients: this.#clients,
      probes: this.#probes,
      verdicts: this.#verdicts,
      fail: (res, err) => this.#fail(res, err),
      limit: (key, policy) => this.#limit(key, policy),
      requireVerifier: (auth) => this.#requireVerifier(auth),
    };
    for (const route of apiRoutes(context)) this.#router.on(route.method, route.path, () => undefined, { route });
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
    await this.#probes.start();
    await this.#verdicts.start();
    const attachments = this.#listen.attachments ?? [];
    const faults = this.#faults;
    // Every request and upgrade runs inside a boundary: a fault answers 500 (or drops the
    // connection) and the server goes on.
    const handler = faults.wrap(
      'request',
      (req: IncomingMessage, res: ServerResponse) => {
        if (this.#overPipelined(req, res)) return;
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
      const now = this.#c.clock.now();
      const { messages } = await this.#c.store.expire(now, { dormantBefore: now - this.#options.dormantAfterMs });
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
      await this.#probes.stop();
      await this.#verdicts.stop();
      server?.closeIdleConnections();
      const force = setTimeout(() => server?.closeAllConnections(), 5000);
      await closed;
      clearTimeout(force);
      await this.#control?.stop();
    })();
    return this.#stopped;
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

  /**
   * Counts the requests in progress on each connection (HTTP/1.1 pipelining queues their answers in
   * order). A client that pipelines more than MAX_PIPELINED without reading the answers is cut off:
   * Node parses a whole read of requests at once, and each costs memory until it is answered.
   */
  #overPipelined(req: IncomingMessage, res: ServerResponse): boolean {
    const socket = req.socket;
    const n = (this.#inFlight.get(socket) ?? 0) + 1;
    this.#inFlight.set(socket, n);
    res.once('close', () => this.#inFlight.set(socket, (this.#inFlight.get(socket) ?? 1) - 1));
    if (n <= MAX_PIPELINED) return false;
    socket.destroy();
    return true;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://server.invalid');
      const route = this.#route(req.method ?? 'GET', url.pathname);
      const version = req.headers[VERSION_HEADER];
      // Health and canaries are plain public resources (canaries are fetched through give peers).
      if (!UNVERSIONED_PREFIXES.some((p) => url.pathname.startsWith(p)) && version !== String(PROTOCOL_VERSION)) {
        throw new LanternError(
          'LA_ERR_VERSION_MISMATCH',
          `This server speaks protocol ${PROTOCOL_VERSION}; send ${VERSION_HEADER}: ${PROTOCOL_VERSION}`,
        );
      }
      const body = hasBody(req) ? await readBody(req, { deadlineMs: this.#limits.bodyTimeoutMs }) : EMPTY_BODY;
      const request = { req, res, url, params: route.params, body };
      if (route.route.auth === 'none') return await route.route.handle(request);
      const auth = await this.#auth.authenticate({ method: req.method ?? 'GET', path: req.url ?? '/', authorization: req.headers.authorization, body });
      if (route.route.auth === 'device' && auth.scheme !== AUTH_SCHEME) {
        throw new LanternError('LA_ERR_AUTH_REQUIRED', 'This request must be signed with the device key (LA1)');
      }
      await route.route.handle({ ...request, auth });
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

  /** The route for a request: LA_ERR_NOT_FOUND, or LA_ERR_METHOD_NOT_ALLOWED with the methods that are. */
  #route(method: string, pathname: string): { route: Route; params: Record<string, string> } {
    const found = this.#router.find(method as Method, pathname);
    // A `:name` segment is never empty (`/v1/keys/` names no user).
    if (found && Object.values(found.params).every((v) => v !== '')) return { route: (found.store as { route: Route }).route, params: { ...found.params } as Record<string, string> };
    const allowed = METHODS.filter((m) => m !== method && this.#router.find(m, pathname));
    if (!found && allowed.length) throw new LanternError('LA_ERR_METHOD_NOT_ALLOWED', `Use ${allowed.join(' or ')}`);
    throw new LanternError('LA_ERR_NOT_FOUND');
  }

  #fail(res: ServerResponse, err: unknown): void {
    const code = LanternError.is(err) ? err.code : 'LA_ERR_INTERNAL';
    this.#c.metrics?.errors.inc({ code });
    if (code === 'LA_ERR_RATE_LIMITED') this.#c.metrics?.rateLimitHits.inc();
    const client = () => this.#clients.of(res.req);
    if (LanternError.is(err)) {
      if (err.code.startsWith('LA_ERR_STORE')) this.#c.logger.error({ err, client: client() }, 'storage failure');
      else if (CLOSING_ERRORS.has(err.code)) this.#c.logger.debug({ code: err.code, client: client() }, 'request cut off');
      sendError(res, err);
    } else {
      this.#c.logger.error({ err, client: client() }, 'request failed');
      sendError(res, new LanternError('LA_ERR_INTERNAL'));
    }
  }
}
