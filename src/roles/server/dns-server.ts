import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Packet } from 'dns-packet';
import type { Clock } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import type { Startable } from '../../core/lifecycle.js';
import { listen } from '../../net/listen.js';
import type { BucketPolicy, PeerRecord, ServerStore } from '../../storage/server-store.js';
import { pruneFullBuckets, takeFromBucket, type BucketState } from '../../storage/token-bucket.js';
import { answerQuery, encodeResponse, RCODE, type ZoneOptions } from './dns-answer.js';

export interface DnsServerOptions extends ZoneOptions {
  host: string;
  port: number;
  /** The registrations are read from the store at most this often (DNS floods must not reach it). */
  snapshotMs: number;
  /**
   * Response-rate limit: UDP answers per second to one client network (IPv4 /24, IPv6 /56), with
   * bursts of twice that; 0 turns it off. Over it, every second query gets an empty truncated
   * answer (TC: a real resolver retries over TCP, which is not limited) and the rest none, so the
   * server cannot be used to flood a spoofed source with answers larger than the queries.
   */
  ratePerSecond: number;
}

export interface DnsComponents {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
  /** Hears the response code name of every answer sent (for metrics). */
  onAnswer?: (rcode: string) => void;
  /** Hears each UDP query over the rate limit, and what it got. */
  onLimited?: (outcome: 'truncated' | 'dropped') => void;
}

const TCP_IDLE_MS = 10_000;
/** Client networks tracked at most (full buckets are dropped first). */
const MAX_RATE_BUCKETS = 10_000;

/** The client network a UDP source belongs to, for the response-rate limit. */
export function clientNetwork(address: string): string {
  const v4 = /^(?:::ffff:)?(\d+\.\d+\.\d+)\.\d+$/i.exec(address);
  if (v4) return v4[1]!;
  const [head = '', tail = ''] = address.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  const g = groups.map((x) => x.padStart(4, '0'));
  return `${g[0]}:${g[1]}:${g[2]}:${(g[3] ?? '0000').slice(0, 2)}`;
}

/**
 * The verified round robin over DNS (see dns-answer.ts for the zone), on UDP and TCP at the same
 * port. Malformed packets are dropped (or FORMERR when the header is readable); nothing a client
 * sends reaches the store beyond one snapshot read per `snapshotMs`.
 */
export class DnsServer implements Startable {
  readonly #c: DnsComponents;
  readonly #o: DnsServerOptions;
  #udp: UdpSocket | undefined;
  #tcp: Server | undefined;
  readonly #tcpSockets = new Set<Socket>();
  #snapshot: { at: number; peers: Promise<PeerRecord[]> } | undefined;
  #rotation = 0;
  #address: { host: string; port: number } | undefined;

  readonly #rate = new Map<string, BucketState & { policy: BucketPolicy }>();
  #slip = 0;

  constructor(components: DnsComponents, options: DnsServerOptions) {
    this.#c = components;
    this.#o = options;
  }

  get address(): { host: string; port: number } {
    if (!this.#address) throw new Error('DNS server is not started');
    return this.#address;
  }

  async start(): Promise<void> {
    // Port 0: UDP picks the port and TCP takes the same one; retried if TCP finds it taken.
    for (let attempt = 0; ; attempt++) {
      const udp = createSocket({ type: isIPv6(this.#o.host) ? 'udp6' : 'udp4' });
      const port = await new Promise<number>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(this.#o.port, this.#o.host, () => {
          udp.off('error', reject);
          resolve(udp.address().port);
        });
      });
      const tcp = createServer((socket) => this.#serveTcp(socket));
      try {
        await listen(tcp, this.#o.host, port);
      } catch (err) {
        udp.close();
        if (this.#o.port === 0 && attempt < 5 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw err;
      }
      udp.on('message', (msg, rinfo) => void this.#serveUdp(udp, msg, rinfo.address, rinfo.port));
      udp.on('error', (err) => this.#c.logger.warn({ err }, 'DNS UDP socket error'));
      this.#udp = udp;
      this.#tcp = tcp;
      this.#address = { host: this.#o.host, port };
      return;
    }
  }

  async stop(): Promise<void> {
    const udp = this.#udp;
    const tcp = this.#tcp;
    this.#udp = undefined;
    this.#tcp = undefined;
    for (const s of this.#tcpSockets) s.destroy();
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (tcp) await new Promise<void>((resolve) => tcp.close(() => resolve()));
  }

  /** Decodes, answers and encodes one message; undefined when nothing is to be sent. */
  async answer(message: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    let query: Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      // A readable header still gets FORMERR, so the client does not wait for a timeout.
      if (message.length < 12 || message[2]! & 0x80) return undefined;
      return this.#count(dnsPacket.encode({ type: 'response', id: message.readUInt16BE(0), flags: RCODE.FORMERR, questions: [] }));
    }
    const now = this.#c.clock.now();
    let peers: PeerRecord[];
    try {
      peers = await this.#peers(now);
    } catch (err) {
      this.#c.logger.error({ err }, 'DNS: could not read the registrations');
      return this.#count(dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags: RCODE.SERVFAIL, questions: query.questions ?? [] }));
    }
    const response = answerQuery(query, { peers, rotation: this.#rotation++, now }, this.#o);
    return response ? this.#count(encodeResponse(response, query, transport)) : undefined;
  }

  #count(encoded: Buffer): Buffer {
    const code = encoded.readUInt16BE(2) & 0xf;
    this.#c.onAnswer?.(Object.entries(RCODE).find(([, v]) => v === code)?.[0] ?? String(code));
    return encoded;
  }

  #peers(now: number): Promise<PeerRecord[]> {
    if (!this.#snapshot || now - this.#snapshot.at >= this.#o.snapshotMs || now < this.#snapshot.at) {
      const peers = this.#c.store.listPeers(now);
      this.#snapshot = { at: now, peers };
      peers.catch(() => (this.#snapshot = undefined));
    }
    return this.#snapshot.peers;
  }

  async #serveUdp(udp: UdpSocket, message: Buffer, host: string, port: number): Promise<void> {
    const out = this.#withinRate(host) ? await this.answer(message, 'udp') : this.#slipOrDrop(message);
    if (out && this.#udp === udp) udp.send(out, port, host);
  }

  #withinRate(host: string): boolean {
    const perSecond = this.#o.ratePerSecond;
    if (perSecond <= 0) return true;
    const key = clientNetwork(host);
    const now = this.#c.clock.now();
    const policy = { capacity: 2 * perSecond, refillPerSecond: perSecond };
    const { state, result } = takeFromBucket(this.#rate.get(key), 1, policy, now);
    this.#rate.set(key, { ...state, policy });
    if (this.#rate.size > MAX_RATE_BUCKETS) pruneFullBuckets(this.#rate, now);
    return result.ok;
  }

  /** Over the limit: every second query gets an empty answer with TC set (retry over TCP), the rest nothing. */
  #slipOrDrop(message: Buffer): Buffer | undefined {
    this.#slip = (this.#slip + 1) % 2;
    if (this.#slip === 0) {
      this.#c.onLimited?.('dropped');
      return undefined;
    }
    let query: Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return undefined;
    }
    if (query.type !== 'query') return undefined;
    this.#c.onLimited?.('truncated');
    const flags = ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | dnsPacket.TRUNCATED_RESPONSE;
    return dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags, questions: query.questions ?? [] });
  }

  /** DNS over TCP: each message is preceded by its 16-bit length; several per connection. */
  #serveTcp(socket: Socket): void {
    this.#tcpSockets.add(socket);
    socket.once('close', () => this.#tcpSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    let pending = Buffer.alloc(0);
    let chain = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const message = pending.subarray(2, 2 + pending.readUInt16BE(0));
        pending = pending.subarray(2 + message.length);
        // Answers go out in the order the queries came.
        chain = chain.then(async () => {
          const out = await this.answer(Buffer.from(message), 'tcp');
          if (!out || socket.destroyed) return;
          const length = Buffer.alloc(2);
          length.writeUInt16BE(out.length);
          socket.write(Buffer.concat([length, out]));
        });
      }
    });
  }
}
