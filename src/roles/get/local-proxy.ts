import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { formatUrl, listen } from '../../net/listen.js';
import { readGreeting, readRequest, sniffProtocol, SOCKS, SOCKS_REPLY, socksReply } from '../../net/socks5.js';
import type { UpstreamPool } from './upstream-pool.js';

/**
 * The get-mode local proxy (HTTP CONNECT, HTTP forward and SOCKS5 on one port, no ticket needed
 * locally): every connection is carried through a give peer chosen by the pool.
 */
export class LocalProxy implements Startable {
  readonly #pool: UpstreamPool;
  readonly #logger: Logger;
  readonly #http = createHttpServer((req, res) => void this.#forward(req, res));
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #url: string | undefined;

  constructor(components: { pool: UpstreamPool; logger: Logger }, readonly options: { host: string; port: number }) {
    this.#pool = components.pool;
    this.#logger = components.logger;
    this.#http.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => void this.#connect(req, socket, head));
  }

  get url(): string {
    if (!this.#url) throw new Error('local proxy is not started');
    return this.#url;
  }

  async start(): Promise<void> {
    const server = createServer((socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', () => socket.destroy());
      sniffProtocol(socket, { socks: (s) => void this.#socks(s), http: (s) => this.#http.emit('connection', s) });
    });
    const a = await listen(server, this.options.host, this.options.port);
    this.#server = server;
    this.#url = formatUrl('http', a.host, a.port);
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  #splice(client: Socket, upstream: Duplex): void {
    client.pipe(upstream).pipe(client);
    const done = () => {
      client.destroy();
      upstream.destroy();
    };
    client.once('close', done);
    upstream.once('close', done);
    upstream.on('error', done);
  }

  async #connect(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(req.url ?? '');
    if (!m) return void socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    try {
      const upstream = await this.#pool.tunnel({ host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) });
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      this.#splice(socket, upstream);
    } catch (err) {
      this.#logger.warn({ code: (err as { code?: string }).code }, 'no give peer could open the tunnel');
      socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    }
  }

  /** Plain HTTP forward: the request goes over a tunnel to the origin, in origin form. */
  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
      if (target.protocol !== 'http:') throw new Error('not http');
    } catch {
      res.writeHead(400, { 'Content-Length': 0 });
      return void res.end();
    }
    let tunnel: Duplex;
    try {
      tunnel = await this.#pool.tunnel({ host: target.hostname.replace(/^\[|\]$/g, ''), port: Number(target.port || 80) });
    } catch {
      res.writeHead(502, { 'Content-Length': 0 });
      return void res.end();
    }
    const headers = { ...req.headers };
    delete headers['proxy-connection'];
    delete headers['proxy-authorization'];
    const out = httpRequest(
      { method: req.method, path: `${target.pathname}${target.search}`, headers, createConnection: () => tunnel as Socket },
      (upstream) => {
        res.writeHead(upstream.statusCode ?? 502, upstream.headers);
        upstream.pipe(res);
      },
    );
    out.on('error', (err) => {
      this.#logger.warn({ err: String(err) }, 'forward failed');
      if (!res.headersSent) res.writeHead(502, { 'Content-Length': 0 });
      res.end();
    });
    req.pipe(out);
  }

  async #socks(socket: Socket): Promise<void> {
    try {
      const { version, methods } = await readGreeting(socket);
      if (version !== SOCKS.version || !methods.includes(SOCKS.noAuth)) return void socket.end(Buffer.from([SOCKS.version, SOCKS.noAcceptable]));
      socket.write(Buffer.from([SOCKS.version, SOCKS.noAuth]));
      const target = await readRequest(socket);
      if ('refuse' in target) return void socket.end(socksReply(target.refuse));
      let upstream: Duplex;
      try {
        upstream = await this.#pool.tunnel(target);
      } catch {
        return void socket.end(socksReply(SOCKS_REPLY.hostUnreachable));
      }
      socket.write(socksReply(SOCKS_REPLY.ok));
      this.#splice(socket, upstream);
    } catch {
      socket.destroy();
    }
  }
}
