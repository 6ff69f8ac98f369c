import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { FaultBoundary } from '../../core/fault-boundary.js';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Startable } from '../../core/lifecycle.js';
import { formatUrl, listen } from '../../net/listen.js';

/** Where the gauges read their values at scrape time. */
export interface MetricSources {
  heldPolls(): number;
  queuedMessages(): Promise<number>;
  broker?: { readonly clients: number; readonly queuedIds: number; readonly relayed: number; readonly refused: number };
}

/** The server's Prometheus metrics (prom-client), one registry per server. */
export class ServerMetrics {
  readonly registry = new Registry();
  #sources: MetricSources | undefined;
  readonly roundRobinPeers = new Gauge({ name: 'lantern_round_robin_peers', help: 'Verified give peers in the round robin', registers: [this.registry] });
  readonly roundRobinBelowMin = new Gauge({
    name: 'lantern_round_robin_below_min',
    help: '1 while the round robin has fewer peers than --min-rotation',
    registers: [this.registry],
  });
  /** Reads the age of the newest pass at scrape time (see passAge). */
  #passAge: (() => number) | undefined;
  readonly verifierLastPassAge = new Gauge({
    name: 'lantern_verifier_last_pass_age_seconds',
    help: 'Seconds since a verifier last passed a live peer (since the server started, if none has)',
    registers: [this.registry],
    collect: () => {
      if (this.#passAge) this.verifierLastPassAge.set(this.#passAge());
    },
  });
  readonly roundRobinMin = new Gauge({ name: 'lantern_round_robin_min', help: 'The --min-rotation threshold', registers: [this.registry] });
  readonly peers = new Gauge({ name: 'lantern_peers', help: 'Live give peer registrations by state', labelNames: ['state'], registers: [this.registry] });
  readonly verdicts = new Counter({ name: 'lantern_peer_verdicts_total', help: 'Verdicts posted by verifiers', labelNames: ['result'], registers: [this.registry] });
  readonly dnsAnswers = new Counter({ name: 'lantern_dns_answers_total', help: 'DNS answers sent, by response code', labelNames: ['rcode'], registers: [this.registry] });
  readonly stunAnswers = new Counter({ name: 'lantern_stun_answers_total', help: 'STUN Binding responses sent (--stun-listen)', registers: [this.registry] });
  readonly dnsRateLimited = new Counter({
    name: 'lantern_dns_rate_limited_total',
    help: 'UDP DNS queries over the response-rate limit: truncated (TC, retry over TCP) or dropped',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  readonly messagesAccepted = new Counter({ name: 'lantern_messages_accepted_total', help: 'Message copies queued (one per recipient device)', registers: [this.registry] });
  readonly messagesDelivered = new Counter({
    name: 'lantern_messages_delivered_total',
    help: 'Messages handed out in poll answers (one not acked is handed out again)',
    registers: [this.registry],
  });
  readonly messagesAcked = new Counter({ name: 'lantern_messages_acked_total', help: 'Messages acked (deleted from their queue)', registers: [this.registry] });
  readonly rateLimitHits = new Counter({ name: 'lantern_rate_limit_hits_total', help: 'Requests refused by a rate limit (429)', registers: [this.registry] });
  readonly errors = new Counter({ name: 'lantern_errors_total', help: 'Error answers by LA_ERR code', labelNames: ['code'], registers: [this.registry] });
  readonly faults = new Counter({
    name: 'lantern_faults_total',
    help: 'Faults contained by an error boundary (the connection or job was dropped, the process went on), by surface',
    labelNames: ['surface'],
    registers: [this.registry],
  });

  constructor() {
    const sources = () => this.#sources;
    // Read at scrape time from the parts observe() names.
    for (const [name, help, read] of [
      ['lantern_long_polls_held', 'Long-polls this instance holds', (s: MetricSources) => s.heldPolls()],
      ['lantern_queued_messages', 'Messages waiting in device queues (the whole store)', (s: MetricSources) => s.queuedMessages()],
      ['lantern_peerjs_clients', 'PeerJS ids connected to this instance', (s: MetricSources) => s.broker?.clients ?? 0],
      ['lantern_peerjs_queued_ids', 'Absent PeerJS ids with signaling waiting for them', (s: MetricSources) => s.broker?.queuedIds ?? 0],
    ] as const) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        async collect() {
          const from = sources();
          this.set(from ? await read(from) : 0);
        },
      });
    }
    for (const [name, help, read] of [
      ['lantern_peerjs_relayed_total', 'PeerJS frames relayed or queued', (b: NonNullable<MetricSources['broker']>) => b.relayed],
      ['lantern_peerjs_refused_total', 'PeerJS frames and connections refused', (b: NonNullable<MetricSources['broker']>) => b.refused],
    ] as const) {
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const broker = sources()?.broker;
          this.reset();
          if (broker) this.inc(read(broker));
        },
      });
    }
  }

  /** Where lantern_verifier_last_pass_age_seconds reads its age, in seconds, when scraped. */
  passAge(read: () => number): void {
    this.#passAge = read;
  }

  /** Tells the gauges where to read (once the server parts exist). */
  observe(sources: MetricSources): void {
    this.#sources = sources;
  }
}

/** GET /metrics in Prometheus text format, on its own listener (keep it off the public port). */
export class MetricsServer implements Startable {
  readonly #metrics: ServerMetrics;
  readonly #host: string;
  readonly #port: number;
  #server: Server | undefined;
  #url: string | undefined;

  readonly #token: Buffer | undefined;
  readonly #faults: FaultBoundary | undefined;

  /** With `token`, only requests with `Authorization: Bearer TOKEN` are served (else 401). */
  constructor(metrics: ServerMetrics, listenAt: { host: string; port: number }, token?: string, faults?: FaultBoundary) {
    this.#metrics = metrics;
    this.#faults = faults;
    this.#host = listenAt.host;
    this.#port = listenAt.port;
    this.#token = token === undefined ? undefined : Buffer.from(`Bearer ${token}`);
  }

  #authorized(header: string | undefined): boolean {
    if (!this.#token) return true;
    const given = Buffer.from(header ?? '');
    return given.length === this.#token.length && timingSafeEqual(given, this.#token);
  }

  get url(): string {
    if (!this.#url) throw new Error('metrics server is not started');
    return this.#url;
  }

  async start(): Promise<void> {
    // Short deadlines: a scraper sends one small request and reads one answer.
    const options = { connectionsCheckingInterval: 1000, headersTimeout: 10_000, requestTimeout: 10_000, keepAliveTimeout: 65_000 };
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      if (!this.#authorized(req.headers.authorization)) {
        res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('a bearer token is required\n');
        return;
      }
      this.#metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.#metrics.registry.contentType, 'cache-control': 'no-store' }).end(text),
        () => res.writeHead(500).end(),
      );
    };
    const faults = this.#faults;
    const server = createServer(options, faults ? faults.wrap('request', handle, (_err, _req, res) => res.destroy()) : handle);
    const addr = await listen(server, this.#host, this.#port);
    this.#server = server;
    this.#url = `${formatUrl('http', addr.host, addr.port)}/metrics`;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
