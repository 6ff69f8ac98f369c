import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Clock } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import type { Startable } from '../../core/lifecycle.js';
import type { Logger } from '../../core/logger.js';
import { listenError } from '../../net/listen.js';
import { bindingSuccess, parseBindingRequest } from '../../protocol/stun.js';
import { LocalRateLimit } from '../../storage/token-bucket.js';
import { clientNetwork } from './dns-server.js';

export interface StunServerOptions {
  host: string;
  port: number;
  /**
   * Answers per second to one client network (IPv4 /24, IPv6 /56), bursts of twice that; 0: no
   * limit. An ICE agent sends a handful per session; beyond the limit requests are dropped, so a
   * spoofed source cannot be flooded with answers (each is at most 24 bytes larger than its request).
   */
  ratePerSecond: number;
}


/**
 * `server --stun-listen`: answers STUN Binding requests over UDP with the address they came from,
 * so that give and get behind NAT learn their public (server-reflexive) ICE candidates from the
 * server they already trust. Everything that is not a well-formed Binding request is dropped
 * without an answer: a probe learns nothing from a malformed packet.
 */
export class StunServer implements Startable {
  readonly #c: { clock: Clock; logger: Logger; faults: FaultBoundary; onAnswer?: () => void };
  readonly #o: StunServerOptions;
  readonly #rate: LocalRateLimit;
  #udp: UdpSocket | undefined;
  #address: { host: string; port: number } | undefined;

  constructor(components: { clock: Clock; logger: Logger; faults?: FaultBoundary; onAnswer?: () => void }, options: StunServerOptions) {
    this.#c = { ...components, faults: components.faults ?? new FaultBoundary({ logger: components.logger }) };
    this.#o = options;
    this.#rate = new LocalRateLimit(options.ratePerSecond);
  }

  get address(): { host: string; port: number } {
    if (!this.#address) throw new Error('STUN server not started');
    return this.#address;
  }

  async start(): Promise<void> {
    const udp = createSocket({ type: isIPv6(this.#o.host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(listenError(err, this.#o.host, this.#o.port));
      udp.once('error', onError);
      udp.bind(this.#o.port, this.#o.host, () => {
        udp.off('error', onError);
        resolve();
      });
    });
    const { address, port } = udp.address();
    this.#address = { host: address, port };
    udp.on('message', this.#c.faults.wrap('stun', (msg: Buffer, rinfo: { address: string; port: number }) => this.#serve(udp, msg, rinfo.address, rinfo.port)));
    udp.on('error', (err) => this.#c.logger.warn({ err }, 'STUN socket error'));
    this.#udp = udp;
  }

  #serve(udp: UdpSocket, msg: Buffer, host: string, port: number): void {
    const transactionId = parseBindingRequest(msg);
    if (!transactionId || !this.#withinRate(host)) return;
    // An IPv4 client on a dual-stack socket is seen as ::ffff:a.b.c.d; it is told its IPv4 address.
    const seen = host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
    udp.send(bindingSuccess(transactionId, seen, port), port, host);
    this.#c.onAnswer?.();
  }

  #withinRate(host: string): boolean {
    return this.#rate.take(clientNetwork(host), this.#c.clock.now());
  }


  async stop(): Promise<void> {
    const udp = this.#udp;
    this.#udp = undefined;
    if (udp) await new Promise<void>((resolve) => udp.close(() => resolve()));
  }
}
