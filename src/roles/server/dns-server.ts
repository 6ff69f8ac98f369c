import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Packet } from 'dns-packet';
import type { Clock } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Logger } from '../../core/logger.js';
import { networkKey } from '../../net/address.js';
import { BoundedWriter } from '../../net/backpressure.js';
import { ConnectionLimiter } from '../../net/connection-limiter.js';
import type { Startable } from '../../core/lifecycle.js';
import { listen } from '../../net/listen.js';
import type { PeerRecord, PeerRegistry } from '../../storage/server-store.js';
import { LocalRateLimit } from '../../storage/token-bucket.js';
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
  store: Pick<PeerRegistry, 'listPeers'>;
  clock: Clock;
  logger: Logger;
  /** Hears the response code name of every answer sent (for metrics). */
  onAnswer?: (rcode: string) => void;
  /** Hears each UDP query over the rate limit, and what it got. */
  onLimited?: (outcome: 'truncated' | 'dropped') => void;
  faults?: FaultBoundary;
}

const TCP_IDLE_MS = 10_000;
/** Queries of one TCP connection read ahead of their answers; beyond, the connection is not read. */
const TCP_MAX_IN_FLIGHT = 16;
/** TCP connections at once, and from one client address. */
const TCP_MAX_CONNECTIONS = 1024;
const TCP_MAX_PER_ADDRESS = 16;

/** The client network a UDP source belongs to, for the response-rate limit: IPv4 /24, IPv6 /56. */
export const clientNetwork = (address: string): string => networkKey(address, { v4: 24, v6: 56 });

/**
 * The end of the question section of a raw message holding `count` questions (offset past the
 * last one's type and class), or -1. Used to echo questions back byte for byte when their names
 * do not survive decoding (label bytes that are not UTF-8, or a dot inside a label).
 */
export function rawQuestionsEnd(message: Buffer, count: number): number {
  let i = 12;
  for (let q = 0; q < count; q++) {
    for (;;) {
      const len = message[i];
      if (len === undefined || (len & 0xc0) !== 0) return -1; // no compression: nothing precedes a question to point at
      if (len === 0) break;
      i += 1 + len;
    }
    i += 1 + 4;
    if (i > message.length) return -1;
  }
  return i;
}

/**
 * The verified round robin over DNS (see dns-answer.ts for the zone), on UDP and TCP at the same
 * port. Malformed packets are dropped (or FORMERR when the header is readable); nothing a client
 * sends reaches the store beyond one snapshot read per `snapshotMs`.
 */
export class DnsServer implements Startable {
  readonly #c: DnsComponents;
  readonly #o: DnsServerOptions;
  readonly #faults: FaultBoundary;
  readonly #connections = new ConnectionLimiter({ maxTotal: TCP_MAX_CONNECTIONS, maxPerAddress: TCP_MAX_PER_ADDRESS });
  #udp: UdpSocket | undefined;
  #tcp: Server | undefined;
  readonly #tcpSockets = new Set<Socket>();
  #snapshot: { at: number; peers: Promise<PeerRecord[]> } | undefined;
  #rotation = 0;
  #address: { host: string; port: number } | undefined;

  readonly #rate: LocalRateLimit;
  #slip = 0;

  constructor(components: DnsComponents, options: DnsServerOptions) {
    this.#c = components;
    this.#o = options;
    this.#rate = new LocalRateLimit(options.ratePerSecond);
    this.#faults = components.faults ?? new FaultBoundary({ logger: components.logger });
  }

  get address(): { host: string; port: number } {
    if (!this.#address) throw new Error('DNS server is not started');
    return this.#address;
  }

  async start(): Promise<void> {
    // Port 0: TCP picks the port and UDP takes the same one (far fewer UDP ports are in use than
    // TCP ones, which outgoing connections also take), retried if UDP finds it taken.
    for (let attempt = 0; ; attempt++) {
      const tcp = createServer(this.#faults.wrap('dns-tcp', (socket: Socket) => this.#serveTcp(socket), (_err, socket) => socket.destroy()));
      const { port } = await listen(tcp, this.#o.host, this.#o.port);
      const udp = createSocket({ type: isIPv6(this.#o.host) ? 'udp6' : 'udp4' });
      try {
        await new Promise<void>((resolve, reject) => {
          udp.once('error', reject);
          udp.bind(port, this.#o.host, () => {
            udp.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        await new Promise<void>((resolve) => tcp.close(() => resolve()));
        if (this.#o.port === 0 && attempt < 20 && (err as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw err;
      }
      udp.on('message', this.#faults.wrap('dns-udp', (msg: Buffer, rinfo: { address: string; port: number }) => this.#serveUdp(udp, msg, rinfo.address, rinfo.port)));
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
    if (!this.#questionsSurvive(message, query)) return this.#count(echoFormErr(message, query));
    const response = answerQuery(query, { peers, rotation: this.#rotation++, now }, this.#o);
    return response ? this.#count(encodeResponse(response, query, transport)) : undefined;
  }

  /** Whether the decoded questions encode back to the bytes received (else names would be echoed wrong). */
  #questionsSurvive(message: Buffer, query: Packet): boolean {
    const questions = query.questions ?? [];
    if (questions.length === 0) return true;
    const end = rawQuestionsEnd(message, questions.length);
    if (end < 0) return false;
    return dnsPacket.encode({ type: 'query', id: 0, questions }).subarray(12).equals(message.subarray(12, end));
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
    return this.#rate.take(clientNetwork(host), this.#c.clock.now());
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

  /**
   * DNS over TCP: each message is preceded by its 16-bit length; several per connection, answered
   * in order, one at a time. At most TCP_MAX_IN_FLIGHT queries are read ahead of their answers,
   * and answers go out under the backpressure rule: a client that pipelines queries and never
   * reads stops being read, then is dropped. Connections are capped in total and per address.
   */
  #serveTcp(socket: Socket): void {
    socket.on('error', () => socket.destroy());
    if (!this.#connections.admit(socket)) return;
    this.#tcpSockets.add(socket);
    socket.once('close', () => this.#tcpSockets.delete(socket));
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    const out = new BoundedWriter(socket, { source: socket, drop: () => socket.destroy() });
    const queries: Buffer[] = [];
    let pending: Buffer = Buffer.alloc(0);
    let answering = false;
    const next = async (): Promise<void> => {
      if (answering) return;
      answering = true;
      try {
        for (let q = queries.shift(); q && !socket.destroyed; q = queries.shift()) {
          if (queries.length < TCP_MAX_IN_FLIGHT && !out.holding) socket.resume();
          const answer = await this.answer(q, 'tcp');
          if (!answer || socket.destroyed) continue;
          const length = Buffer.alloc(2);
          length.writeUInt16BE(answer.length);
          out.write(Buffer.concat([length, answer]));
        }
      } finally {
        answering = false;
      }
    };
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        const size = pending.readUInt16BE(0);
        queries.push(Buffer.from(pending.subarray(2, 2 + size)));
        pending = pending.subarray(2 + size);
      }
      if (queries.length >= TCP_MAX_IN_FLIGHT) socket.pause();
      this.#faults.run('dns-tcp', next, () => socket.destroy());
    });
  }
}

/** FORMERR echoing the questions exactly as received (their names could not be represented). */
function echoFormErr(message: Buffer, query: Packet): Buffer {
  const count = query.questions?.length ?? 0;
  const end = rawQuestionsEnd(message, count);
  const flags = ((query.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | RCODE.FORMERR;
  const header = dnsPacket.encode({ type: 'response', id: query.id ?? 0, flags, questions: [] });
  if (end < 0) return header;
  header.writeUInt16BE(count, 4);
  return Buffer.concat([header, message.subarray(12, end)]);
}
