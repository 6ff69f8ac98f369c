import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Startable } from '../../core/lifecycle.js';
import { formatUrl, listen } from '../../net/listen.js';

/** The server's Prometheus metrics (prom-client), one registry per server. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly roundRobinPeers = new Gauge({ name: 'lantern_round_robin_peers', help: 'Verified give peers in the round robin', registers: [this.registry] });
  readonly roundRobinBelowMin = new Gauge({
    name: 'lantern_round_robin_below_min',
    help: '1 while the round robin has fewer peers than --min-rotation',
    registers: [this.registry],
  });
  readonly roundRobinMin = new Gauge({ name: 'lantern_round_robin_min', help: 'The --min-rotation threshold', registers: [this.registry] });
  readonly peers = new Gauge({ name: 'lantern_peers', help: 'Live give peer registrations by state', labelNames: ['state'], registers: [this.registry] });
  readonly verdicts = new Counter({ name: 'lantern_peer_verdicts_total', help: 'Verdicts posted by verifiers', labelNames: ['result'], registers: [this.registry] });
  readonly dnsAnswers = new Counter({ name: 'lantern_dns_answers_total', help: 'DNS answers sent, by response code', labelNames: ['rcode'], registers: [this.registry] });
}

/** GET /metrics in Prometheus text format, on its own listener (keep it off the public port). */
export class MetricsServer implements Startable {
  readonly #metrics: ServerMetrics;
  readonly #host: string;
  readonly #port: number;
  #server: Server | undefined;
  #url: string | undefined;

  constructor(metrics: ServerMetrics, listenAt: { host: string; port: number }) {
    this.#metrics = metrics;
    this.#host = listenAt.host;
    this.#port = listenAt.port;
  }

  get url(): string {
    if (!this.#url) throw new Error('metrics server is not started');
    return this.#url;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      this.#metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.#metrics.registry.contentType, 'cache-control': 'no-store' }).end(text),
        () => res.writeHead(500).end(),
      );
    });
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
