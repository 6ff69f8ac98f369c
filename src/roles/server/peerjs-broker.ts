import { systemClock, type Clock } from '../../core/clock.js';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import { BoundedWriter } from '../../net/backpressure.js';
import type { PeerjsDirectory } from '../../storage/peerjs-directory.js';
import type { Notifier } from '../../storage/server-store.js';
import {
  errorFrame,
  MAX_PEER_ID_LENGTH,
  PEER_ID_PATTERN,
  PEERJS_ERRORS,
  PEERJS_TYPES,
  parseClientFrame,
  QUEUED_TYPES,
  RELAYED_TYPES,
  relayFrame,
} from '../../protocol/peerjs.js';

export interface PeerjsQueueLimits {
  /** Messages waiting for one absent id. */
  perIdMessages: number;
  perIdBytes: number;
  /** Absent ids with waiting messages, and their bytes, across the broker. */
  totalIds: number;
  totalBytes: number;
}

export interface PeerjsBrokerOptions {
  /** Where the PeerJS client's `path` points: starts and ends with `/` (default `/`). */
  path: string;
  key: string;
  /** Messages for an absent id wait this long; then each sender gets one EXPIRE. */
  expireTimeoutMs: number;
  /** A client without a HEARTBEAT for this long is closed. */
  aliveTimeoutMs: number;
  /** Ids connected at once: to this broker, and with a cluster to all the instances together. */
  concurrentLimit: number;
  allowDiscovery: boolean;
  /** Larger frames get an ERROR and are dropped (the connection stays). */
  maxFrameBytes: number;
  queue: PeerjsQueueLimits;
  /** When set, only tokens it accepts may register an id (our tickets, `aud: peerjs`). */
  checkToken?: (token: string) => boolean;
}

export const defaultPeerjsOptions: PeerjsBrokerOptions = {
  path: '/',
  key: 'peerjs',
  expireTimeoutMs: 5000,
  aliveTimeoutMs: 60_000,
  concurrentLimit: 5000,
  allowDiscovery: false,
  maxFrameBytes: 64 * 1024,
  queue: { perIdMessages: 64, perIdBytes: 256 * 1024, totalIds: 10_000, totalBytes: 32 * 1024 * 1024 },
};

interface Client {
  id: string;
  token: string;
  socket: WebSocket;
  /** Every frame to this client goes through here (the backpressure rule). */
  out: BoundedWriter;
  lastHeartbeat: number;
  /** Cluster mode: stops this instance hearing frames published for the id. */
  unsubscribe?: () => Promise<void>;
}

/**
 * Several server instances as one broker: ids are claimed in a shared directory (ID-TAKEN, the
 * concurrent-client limit and `/peers` across instances), frames for an id connected elsewhere are published on its channel, and an id coming
 * online is announced so that signaling queued for it on other instances is sent on.
 */
export interface PeerjsCluster {
  notifier: Notifier;
  directory: PeerjsDirectory;
}

const ONLINE_CHANNEL = 'peerjs-online';
const idChannel = (id: string) => `peerjs:${id}`;

interface Queue {
  createdAt: number;
  frames: Array<{ src: string; frame: string }>;
  bytes: number;
}

const ALIVE_CHECK_MS = 300;
const EXPIRE_CHECK_MS = 1000;

/**
 * A PeerJS-compatible signaling broker (wire-compatible with PeerJS 1.5.5 clients), attached to the
 * server's HTTP(S) listener, so it is WSS whenever the server has TLS. It relays OFFER, ANSWER,
 * CANDIDATE and LEAVE between client-chosen ids, with `src` set to the sender's id and `payload`
 * untouched, and queues signaling for absent ids until EXPIRE. Unlike the official server: bounded
 * queues, a frame cap, an ERROR (never a wedged socket) for a frame that is not JSON, OPEN again
 * and the old socket closed on a reconnect with the same id and token, nothing delivered without
 * a `dst`, nothing but signaling relayed, and optionally tickets required to register an id.
 */
export class PeerjsBroker {
  readonly #o: PeerjsBrokerOptions;
  readonly #logger: Logger;
  readonly #faults: FaultBoundary;
  readonly #clock: Clock;
  readonly #cluster: PeerjsCluster | undefined;
  readonly #instance = randomUUID();
  #offline: (() => Promise<void>) | undefined;
  readonly #wss: WebSocketServer;
  readonly #clients = new Map<string, Client>();
  readonly #queues = new Map<string, Queue>();
  #queuedBytes = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #ticks = 0;
  /** Relayed frames, delivered or queued; frames refused (invalid, too large, over a limit). */
  relayed = 0;
  refused = 0;

  constructor(components: { logger: Logger; clock?: Clock; cluster?: PeerjsCluster; faults?: FaultBoundary }, options: PeerjsBrokerOptions) {
    this.#o = options;
    this.#logger = components.logger;
    this.#clock = components.clock ?? systemClock;
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
    this.#cluster = components.cluster;
    // Frames beyond 1 MiB are cut off by ws (close 1009); up to that, our own cap answers with ERROR.
    this.#wss = new WebSocketServer({ noServer: true, maxPayload: Math.max(options.maxFrameBytes * 16, 1024 * 1024), perMessageDeflate: false });
  }

  get clients(): number {
    return this.#clients.size;
  }

  get queuedIds(): number {
    return this.#queues.size;
  }

  start(): void {
    this.#timer = setInterval(this.#faults.wrap('timer', () => this.#sweep(this.#clock.now())), ALIVE_CHECK_MS);
    this.#timer.unref();
    void this.#cluster?.notifier
      .subscribe(ONLINE_CHANNEL, this.#faults.wrap('websocket', (message: string) => this.#onOnline(message)))
      .then((off) => (this.#offline = off))
      .catch((err: unknown) => this.#logger.error({ err }, 'PeerJS: cannot follow the other instances'));
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    await this.#offline?.().catch(() => undefined);
    for (const client of this.#clients.values()) await this.#forget(client);
    for (const client of this.#wss.clients) client.terminate();
    this.#clients.clear();
    this.#queues.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  /** The HTTP side: `GET {path}`, `GET {path}{key}/id`, `GET {path}{key}/peers`. False if not ours. */
  handleRequest(req: IncomingMessage, res: ServerResponse): boolean {
    const pathname = (req.url ?? '/').split('?')[0]!;
    const { path, key } = this.#o;
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, {
        'content-type': type,
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
        'access-control-allow-origin': '*',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    if (pathname === path) {
      send(200, 'application/json', JSON.stringify({ name: 'PeerJS Server', description: 'A server side element to broker connections between PeerJS clients.', website: 'https://peerjs.com/' }));
      return true;
    }
    if (pathname === `${path}${key}/id`) {
      let id = randomUUID();
      while (this.#clients.has(id)) id = randomUUID();
      send(200, 'text/html', id);
      return true;
    }
    if (pathname === `${path}${key}/peers`) {
      if (!this.#o.allowDiscovery) send(401, 'text/plain', 'Unauthorized');
      else if (!this.#cluster) send(200, 'application/json', JSON.stringify([...this.#clients.keys()]));
      // Several instances: the ids connected to any of them.
      else
        this.#cluster.directory.list().then(
          (ids) => send(200, 'application/json', JSON.stringify(ids)),
          (err: unknown) => {
            this.#logger.error({ err }, 'PeerJS: directory unavailable');
            send(503, 'text/plain', 'Service Unavailable');
          },
        );
      return true;
    }
    return false;
  }

  /** The WebSocket side at `{path}peerjs`. False if the upgrade is for another path. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    // Split by hand: a request target such as `//[` is no URL, and is not ours either.
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    if ((q < 0 ? target : target.slice(0, q)) !== `${this.#o.path}peerjs`) return false;
    const params = new URLSearchParams(q < 0 ? '' : target.slice(q + 1));
    this.#wss.handleUpgrade(
      req,
      socket,
      head,
      this.#faults.wrap('websocket', (ws: WebSocket) => this.#accept(ws, params), (_err, ws) => ws.terminate()),
    );
    return true;
  }

  #accept(socket: WebSocket, params: URLSearchParams): void {
    const id = params.get('id') ?? '';
    const token = params.get('token') ?? '';
    const key = params.get('key') ?? '';
    const refuse = (frame: string) => {
      this.refused++;
      socket.send(frame, () => socket.close());
    };
    socket.on('error', () => socket.terminate());
    if (!id || !token || !key) return refuse(errorFrame(PEERJS_ERRORS.missingParams));
    if (key !== this.#o.key) return refuse(errorFrame(PEERJS_ERRORS.invalidKey));
    if (id.length > MAX_PEER_ID_LENGTH || !PEER_ID_PATTERN.test(id)) return refuse(errorFrame(PEERJS_ERRORS.invalidId));
    if (this.#o.checkToken && !this.#o.checkToken(token)) return refuse(errorFrame(PEERJS_ERRORS.invalidToken));
    const taken = () => refuse(JSON.stringify({ type: PEERJS_TYPES.idTaken, payload: { msg: PEERJS_ERRORS.idTaken } }));
    const existing = this.#clients.get(id);
    if (existing && existing.token !== token) return taken();
    if (!existing && this.#clients.size >= this.#o.concurrentLimit) return refuse(errorFrame(PEERJS_ERRORS.concurrentLimit));
    const client: Client = { id, token, socket, out: this.#writer(socket), lastHeartbeat: this.#clock.now() };
    if (!this.#cluster) return this.#register(client, existing);
    // Cluster: the id is claimed in the shared directory first; frames that arrive meanwhile wait.
    const early: Array<[RawData, boolean]> = [];
    // Frames that arrive while the id is claimed wait, up to a few (then the client is dropped).
    const hold = (data: RawData, isBinary: boolean) => (early.length < 16 ? early.push([data, isBinary]) : socket.terminate());
    socket.on('message', hold);
    void (async () => {
      try {
        // The id, and a place under the concurrent-client limit, across every instance.
        const claimed = await this.#cluster!.directory.claim(id, token, this.#claimTtl(), this.#o.concurrentLimit);
        if (claimed === 'taken') return taken();
        if (claimed === 'full') return refuse(errorFrame(PEERJS_ERRORS.concurrentLimit));
        if (socket.readyState !== socket.OPEN) return void (await this.#cluster!.directory.release(id, token));
        client.unsubscribe = await this.#cluster!.notifier.subscribe(
          idChannel(id),
          this.#faults.wrap('websocket', (frame: string) => {
            if (this.#clients.get(id) === client && socket.readyState === socket.OPEN) client.out.write(frame);
          }),
        );
        const current = this.#clients.get(id);
        if (current && current.token !== token) return taken();
        socket.off('message', hold);
        this.#register(client, current);
        for (const [data, isBinary] of early) this.#onFrame(client, data, isBinary);
        // Other instances: send on what waits for this id, and drop an older socket of it.
        await this.#cluster!.notifier.publish(ONLINE_CHANNEL, `${this.#instance} ${id}`);
      } catch (err) {
        this.#logger.error({ err }, 'PeerJS: directory unavailable');
        refuse(errorFrame('Broker unavailable, try again'));
      }
    })();
  }

  /** Registers an accepted client: OPEN, then whatever was queued for its id here. */
  #register(client: Client, existing: Client | undefined): void {
    const { id, socket } = client;
    this.#clients.set(id, client);
    if (existing) {
      // The same client reconnecting (same token): the new socket takes over, gets OPEN like any
      // registration, and the old one is closed (closing it no longer affects the id).
      this.#replaced(existing);
    }
    socket.on(
      'message',
      this.#faults.wrap('websocket', (data: RawData, isBinary: boolean) => this.#onFrame(client, data, isBinary), () => socket.terminate()),
    );
    socket.on('close', () => {
      if (this.#clients.get(id) !== client) return;
      this.#clients.delete(id);
      void this.#forget(client);
    });
    client.out.write(JSON.stringify({ type: PEERJS_TYPES.open }));
    const queued = this.#queues.get(id);
    if (queued) {
      this.#dropQueue(id, queued);
      for (const { frame } of queued.frames) client.out.write(frame);
    }
  }

  /** Closes a client whose id and token reconnected elsewhere (the claim stays with the new socket). */
  #replaced(old: Client): void {
    void old.unsubscribe?.();
    old.socket.close(1000, 'replaced by a new connection with the same id and token');
  }

  /** Cluster: gives up the id's channel and claim. */
  async #forget(client: Client): Promise<void> {
    if (!this.#cluster) return;
    await client.unsubscribe?.().catch(() => undefined);
    await this.#cluster.directory.release(client.id, client.token).catch(() => undefined);
  }

  #claimTtl(): number {
    return this.#o.aliveTimeoutMs + 30_000;
  }

  /** Another instance registered `id`: send on what waits for it here; an older socket of it here goes. */
  #onOnline(message: string): void {
    const [instance, id] = message.split(' ') as [string, string];
    if (instance === this.#instance) return;
    const local = this.#clients.get(id);
    if (local) {
      this.#clients.delete(id);
      this.#replaced(local);
    }
    const queued = this.#queues.get(id);
    if (!queued) return;
    this.#dropQueue(id, queued);
    for (const { frame } of queued.frames) {
      this.#cluster?.notifier.publish(idChannel(id), frame).catch((err: unknown) => this.#logger.warn({ err }, 'PeerJS: could not pass queued signaling on'));
    }
  }

  #onFrame(client: Client, data: RawData, isBinary: boolean): void {
    if (this.#clients.get(client.id) !== client) return; // replaced by a newer socket
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer | ArrayBuffer).byteLength;
    if (size > this.#o.maxFrameBytes) return this.#reject(client, PEERJS_ERRORS.tooLarge);
    const frame = isBinary ? undefined : parseClientFrame(data.toString());
    if (!frame) return this.#reject(client, PEERJS_ERRORS.notJson);
    if (frame.type === PEERJS_TYPES.heartbeat) {
      client.lastHeartbeat = this.#clock.now();
      if (this.#cluster) void this.#cluster.directory.claim(client.id, client.token, this.#claimTtl(), this.#o.concurrentLimit).catch(() => undefined);
      return;
    }
    // Not signaling (unknown types, a client's EXPIRE), or nowhere to go: nothing is delivered.
    if (!RELAYED_TYPES.has(frame.type) || frame.dst === undefined) return;
    const out = relayFrame(frame.type, client.id, frame.dst, frame.payloadText);
    const dst = this.#clients.get(frame.dst);
    if (dst && dst.socket.readyState === dst.socket.OPEN) {
      if (dst.out.write(out)) this.relayed++;
      else this.refused++;
      return;
    }
    if (this.#cluster) {
      // Connected to another instance? Publishes go out in order, so their answers come in order too.
      const dstId = frame.dst;
      const type = frame.type;
      void this.#cluster.notifier.publish(idChannel(dstId), out).then(
        (heard) => {
          if (heard > 0) this.relayed++;
          else if (QUEUED_TYPES.has(type)) this.#enqueue(client.id, dstId, out);
        },
        () => QUEUED_TYPES.has(type) && this.#enqueue(client.id, dstId, out),
      );
      return;
    }
    if (QUEUED_TYPES.has(frame.type)) this.#enqueue(client.id, frame.dst, out);
  }

  #reject(client: Client, msg: string): void {
    this.refused++;
    client.out.write(errorFrame(msg));
  }

  /**
   * The one way frames reach a client: a client that does not read is paused (its own frames wait
   * in the kernel), and dropped once a bounded amount is queued for it; ERROR replies included.
   */
  #writer(socket: WebSocket): BoundedWriter {
    return new BoundedWriter(
      { write: (data: Buffer | string, done: (err?: Error) => void) => socket.send(data, done) },
      {
        source: socket,
        drop: () => {
          this.#logger.warn('PeerJS client is not reading; closing it');
          socket.terminate();
        },
      },
    );
  }

  #enqueue(src: string, dst: string, frame: string): void {
    const limits = this.#o.queue;
    let queue = this.#queues.get(dst);
    const bytes = Buffer.byteLength(frame);
    if (!queue && this.#queues.size >= limits.totalIds) return void this.refused++;
    if (queue && (queue.frames.length >= limits.perIdMessages || queue.bytes + bytes > limits.perIdBytes)) return void this.refused++;
    if (this.#queuedBytes + bytes > limits.totalBytes) return void this.refused++;
    if (!queue) this.#queues.set(dst, (queue = { createdAt: this.#clock.now(), frames: [], bytes: 0 }));
    queue.frames.push({ src, frame });
    queue.bytes += bytes;
    this.#queuedBytes += bytes;
    this.relayed++;
  }

  #dropQueue(id: string, queue: Queue): void {
    this.#queues.delete(id);
    this.#queuedBytes -= queue.bytes;
  }

  #sweep(now: number): void {
    for (const client of this.#clients.values()) {
      if (now - client.lastHeartbeat >= this.#o.aliveTimeoutMs) {
        this.#clients.delete(client.id);
        void this.#forget(client);
        client.socket.terminate();
      }
    }
    if (++this.#ticks % Math.round(EXPIRE_CHECK_MS / ALIVE_CHECK_MS) !== 0) return;
    for (const [dst, queue] of this.#queues) {
      if (now - queue.createdAt < this.#o.expireTimeoutMs) continue;
      this.#dropQueue(dst, queue);
      // One EXPIRE per sender still connected.
      for (const src of new Set(queue.frames.map((f) => f.src))) {
        const sender = this.#clients.get(src);
        // A sender that went away meanwhile gets nothing.
        if (sender && sender.socket.readyState === sender.socket.OPEN) sender.out.write(JSON.stringify({ type: PEERJS_TYPES.expire, src: dst, dst: src }));
      }
    }
  }
}
