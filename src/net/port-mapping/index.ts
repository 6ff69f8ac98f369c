import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import ipaddr from 'ipaddr.js';
import type { Clock, ClockTimer } from '../../core/clock.js';
import type { Logger } from '../../core/logger.js';
import { MappingRefused, pcpMap, pcpUnmap } from './pcp.js';
import { discoverIgd, igdExternalAddress, igdMap, igdUnmap, UpnpError, type IgdService } from './upnp-igd.js';

/** Which protocols a give peer may use to open its port on the home router. */
export type PortMappingChoice = 'auto' | 'upnp' | 'pcp' | 'off';
export const PORT_MAPPING_CHOICES: readonly PortMappingChoice[] = ['auto', 'upnp', 'pcp', 'off'];

/** A port the router forwards to this machine. */
export interface PortMapping {
  method: 'upnp' | 'pcp' | 'nat-pmp';
  /** The router's LAN address. */
  gateway: string;
  externalHost: string;
  externalPort: number;
  internalHost: string;
  internalPort: number;
  lifetimeSeconds: number;
  /** When the lease was last granted or renewed (ms). */
  renewedAt: number;
}

/**
 * What port mapping did: a mapping, or why there is none:
 * - `off`: `give --port-mapping off`;
 * - `not-needed`: the proxy listens on loopback, or this machine's address toward the router is public;
 * - `no-gateway`: no default route;
 * - `no-answer`: no router answered UPnP or PCP/NAT-PMP;
 * - `refused`: a router answered and said no (`detail` has its words).
 */
export type PortMappingStatus = PortMapping | { method: null; reason: 'off' | 'not-needed' | 'no-gateway' | 'no-answer' | 'refused'; detail?: string };

export interface PortMapperOptions {
  method: PortMappingChoice;
  /** The address the proxy listens on (0.0.0.0 or a LAN address); loopback needs no mapping. */
  listenHost: string;
  internalPort: number;
  /** The lease asked for; renewed at half of what the router grants. */
  leaseSeconds: number;
  description?: string;
  /** How long each protocol gets to find the router (default 2 s). */
  timeoutMs?: number;
  /** The router (default: the default route's gateway, from /proc/net/route). */
  gateway?: string;
}

/** The default IPv4 gateway, from the kernel's routing table (undefined off Linux or without one). */
export async function defaultGateway(routeTable = '/proc/net/route'): Promise<string | undefined> {
  const text = await readFile(routeTable, 'utf8').catch(() => '');
  for (const line of text.split('\n').slice(1)) {
    const [, destination, gateway, flags] = line.trim().split(/\s+/);
    if (destination !== '00000000' || !gateway || (Number.parseInt(flags ?? '0', 16) & 0x2) === 0) continue;
    const n = Number.parseInt(gateway, 16); // little-endian
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
  }
  return undefined;
}

/** The address this machine sends from toward `host` (a connected UDP socket sends nothing). */
export async function localAddressToward(host: string): Promise<string> {
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(9, host, () => resolve());
    });
    return socket.address().address;
  } finally {
    socket.close();
  }
}

const isPublic = (address: string) => ipaddr.isValid(address) && ipaddr.process(address).range() === 'unicast';

/**
 * Opens the give port on the home router: PCP (NAT-PMP on routers that speak only that), then
 * UPnP-IGD, as `method` allows. The lease is renewed at half its life; a renewal that finds the
 * mapping gone or moved maps again and reports the new one through `onChange`. `stop` deletes it.
 */
export class PortMapper {
  readonly #c: { clock: Clock; logger: Logger; onChange?: (status: PortMappingStatus) => void };
  readonly #o: PortMapperOptions;
  #status: PortMappingStatus = { method: null, reason: 'off' };
  #igd: IgdService | undefined;
  #nonce: Buffer | undefined;
  #timer: ClockTimer | undefined;
  #stopped = false;

  constructor(components: { clock: Clock; logger: Logger; onChange?: (status: PortMappingStatus) => void }, options: PortMapperOptions) {
    this.#c = components;
    this.#o = options;
  }

  get status(): PortMappingStatus {
    return this.#status;
  }

  get mapping(): PortMapping | undefined {
    return this.#status.method ? this.#status : undefined;
  }

  /** Maps the port if it can and must; never throws (the reason is in the status). */
  async start(): Promise<PortMappingStatus> {
    this.#status = await this.#map(this.#o.internalPort);
    if (this.mapping) this.#schedule();
    return this.#status;
  }

  async #map(externalPort: number): Promise<PortMappingStatus> {
    const { method, listenHost } = this.#o;
    if (method === 'off') return { method: null, reason: 'off' };
    if (ipaddr.isValid(listenHost) && ipaddr.process(listenHost).range() === 'loopback') return { method: null, reason: 'not-needed', detail: 'the proxy listens on loopback' };
    const gateway = this.#o.gateway ?? (await defaultGateway());
    if (!gateway) return { method: null, reason: 'no-gateway' };
    const internalHost = ipaddr.isValid(listenHost) && !['0.0.0.0', '::'].includes(listenHost) ? listenHost : await localAddressToward(gateway).catch(() => '');
    if (!internalHost) return { method: null, reason: 'no-gateway' };
    if (isPublic(internalHost)) return { method: null, reason: 'not-needed', detail: `${internalHost} is a public address` };
    const timeoutMs = this.#o.timeoutMs ?? 2000;
    const refusals: string[] = [];
    const base = { gateway, internalHost, internalPort: this.#o.internalPort, renewedAt: this.#c.clock.now() };
    if (method === 'auto' || method === 'pcp') {
      try {
        const granted = await pcpMap({ gateway, clientAddress: internalHost, internalPort: this.#o.internalPort, externalPort, lifetimeSeconds: this.#o.leaseSeconds, signal: AbortSignal.timeout(timeoutMs), ...(this.#nonce ? { nonce: this.#nonce } : {}) });
        if (granted) {
          this.#nonce = granted.nonce;
          return { ...base, method: granted.protocol, externalHost: granted.externalHost, externalPort: granted.externalPort, lifetimeSeconds: granted.lifetimeSeconds };
        }
      } catch (err) {
        if (!(err instanceof MappingRefused)) throw err;
        refusals.push(err.message);
      }
    }
    if (method === 'auto' || method === 'upnp') {
      try {
        this.#igd ??= await discoverIgd(internalHost, timeoutMs, gateway);
        if (this.#igd) {
          const granted = await igdMap(this.#igd, { internalHost, internalPort: this.#o.internalPort, externalPort, leaseSeconds: this.#o.leaseSeconds, description: this.#o.description ?? 'lantern-agent give' });
          const externalHost = await igdExternalAddress(this.#igd);
          return { ...base, gateway: new URL(this.#igd.location).hostname, method: 'upnp', externalHost, externalPort: granted.externalPort, lifetimeSeconds: granted.leaseSeconds };
        }
      } catch (err) {
        if (!(err instanceof UpnpError)) refusals.push(`UPnP: ${(err as Error).message}`);
        else refusals.push(err.message);
      }
    }
    return refusals.length ? { method: null, reason: 'refused', detail: refusals.join('; ') } : { method: null, reason: 'no-answer' };
  }

  /** Renewal at half the granted lease (a permanent lease, 0, is checked hourly). */
  #schedule(): void {
    const mapping = this.mapping;
    if (this.#stopped || !mapping) return;
    const halfLife = mapping.lifetimeSeconds > 0 ? (mapping.lifetimeSeconds * 1000) / 2 : 3600_000;
    this.#timer = this.#c.clock.setTimeout(() => void this.#renew(), Math.max(1000, halfLife));
    this.#timer.unref?.();
  }

  async #renew(): Promise<void> {
    const before = this.mapping;
    if (this.#stopped || !before) return;
    let next: PortMappingStatus;
    try {
      next = await this.#map(before.externalPort);
    } catch (err) {
      next = { method: null, reason: 'refused', detail: (err as Error).message };
    }
    if (this.#stopped) return;
    if (!next.method) {
      // The router did not renew: keep what we had until the lease runs out, and try again soon.
      this.#c.logger.warn({ reason: next.reason, detail: next.method === null ? next.detail : undefined }, 'could not renew the port mapping; retrying');
      if (this.#c.clock.now() - before.renewedAt > before.lifetimeSeconds * 1000 && before.lifetimeSeconds > 0) {
        this.#status = next;
        this.#c.onChange?.(next);
      }
      this.#timer = this.#c.clock.setTimeout(() => void this.#renew(), 30_000);
      this.#timer.unref?.();
      return;
    }
    this.#status = next;
    if (next.externalPort !== before.externalPort || next.externalHost !== before.externalHost || next.method !== before.method) this.#c.onChange?.(next);
    this.#schedule();
  }

  /** Deletes the mapping (a router that does not answer lets the lease run out). */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) this.#c.clock.clearTimeout(this.#timer);
    const mapping = this.mapping;
    if (!mapping) return;
    try {
      if (mapping.method === 'upnp' && this.#igd) await igdUnmap(this.#igd, mapping.externalPort);
      else if (mapping.method !== 'upnp' && this.#nonce) await pcpUnmap({ gateway: mapping.gateway, clientAddress: mapping.internalHost, internalPort: mapping.internalPort, protocol: mapping.method, nonce: this.#nonce });
    } catch (err) {
      this.#c.logger.warn({ err: (err as Error).message }, 'could not remove the port mapping; it ends with its lease');
    }
    this.#status = { method: null, reason: 'off' };
  }
}
