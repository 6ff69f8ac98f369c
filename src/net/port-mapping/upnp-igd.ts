import { createSocket } from 'node:dgram';
import { XMLParser } from 'fast-xml-parser';

/**
 * UPnP Internet Gateway Device, the port-mapping protocol most home routers speak: an SSDP search
 * on the LAN, the router's device description, then SOAP actions on its WANIPConnection (or
 * WANPPPConnection) service. IGD v1 and v2 both: v2 routers get AddAnyPortMapping (the router
 * picks a free port on conflict), v1 routers AddPortMapping with a few other ports on conflict.
 */

const SSDP_ADDRESS = '239.255.255.250';
const SSDP_PORT = 1900;
/** Device descriptions and SOAP answers are a few KiB; anything larger is not a router's. */
const MAX_XML_BYTES = 256 * 1024;
const SEARCH_TARGETS = ['urn:schemas-upnp-org:device:InternetGatewayDevice:2', 'urn:schemas-upnp-org:device:InternetGatewayDevice:1'];
const SERVICE_TYPES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
];

/** A router's port-mapping service, found by `discoverIgd`. */
export interface IgdService {
  /** The description's URL (its host is the router's address). */
  location: string;
  serviceType: string;
  controlUrl: string;
}

/** A SOAP fault from the router: `code` is the UPnP error code (718: the port is taken). */
export class UpnpError extends Error {
  constructor(
    readonly code: number,
    readonly description: string,
  ) {
    super(`UPnP error ${code}: ${description}`);
  }
}

const xml = new XMLParser({ removeNSPrefix: true, parseTagValue: false, ignoreAttributes: true, processEntities: true });

async function fetchText(url: string, init: RequestInit, timeoutMs: number): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { ...init, redirect: 'error', signal: AbortSignal.timeout(timeoutMs) });
  const reader = res.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const next = await reader?.read();
    if (!next || next.done) break;
    size += next.value.byteLength;
    if (size > MAX_XML_BYTES) {
      await reader?.cancel();
      throw new Error(`${url}: answer larger than ${MAX_XML_BYTES} bytes`);
    }
    chunks.push(next.value);
  }
  return { status: res.status, text: Buffer.concat(chunks).toString('utf8') };
}

/**
 * M-SEARCH from `localAddress` (the address facing the router), twice within `timeoutMs`; the
 * LOCATION of each distinct answer, the `prefer` host's first.
 */
export async function ssdpSearch(localAddress: string, timeoutMs: number, prefer?: string): Promise<string[]> {
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  const found = new Set<string>();
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, localAddress, () => resolve());
    });
    socket.setMulticastInterface(localAddress);
    socket.setMulticastTTL(2);
    socket.on('message', (msg) => {
      const location = /^location:\s*(\S+)\s*$/im.exec(msg.toString('latin1'))?.[1];
      if (location && /^http:\/\//i.test(location)) found.add(location);
    });
    const search = () => {
      for (const st of SEARCH_TARGETS) {
        const request = `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_ADDRESS}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${st}\r\n\r\n`;
        socket.send(request, SSDP_PORT, SSDP_ADDRESS);
      }
    };
    search();
    // Answers come within MX (1 s); a lost datagram gets one more search halfway. The first
    // answer ends the wait, after a moment for the gateway's own to arrive too.
    const started = Date.now();
    let searchedAgain = false;
    while (Date.now() - started < timeoutMs) {
      await new Promise((r) => setTimeout(r, 50));
      if (found.size > 0) {
        await new Promise((r) => setTimeout(r, 50));
        break;
      }
      if (!searchedAgain && Date.now() - started > timeoutMs / 2) {
        searchedAgain = true;
        search();
      }
    }
  } finally {
    socket.close();
  }
  const all = [...found];
  return prefer ? [...all.filter((l) => new URL(l).hostname === prefer), ...all.filter((l) => new URL(l).hostname !== prefer)] : all;
}

interface DeviceXml {
  serviceList?: { service?: ServiceXml | ServiceXml[] };
  deviceList?: { device?: DeviceXml | DeviceXml[] };
}
interface ServiceXml {
  serviceType?: string;
  controlURL?: string;
}

const list = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The best port-mapping service a device description offers (WANIPConnection:2, then :1, then PPP). */
export function igdServiceFrom(location: string, descriptionXml: string): IgdService | undefined {
  const root = xml.parse(descriptionXml) as { root?: { URLBase?: string; device?: DeviceXml } };
  const services: ServiceXml[] = [];
  const walk = (device: DeviceXml | undefined) => {
    if (!device) return;
    services.push(...list(device.serviceList?.service));
    list(device.deviceList?.device).forEach(walk);
  };
  walk(root.root?.device);
  for (const type of SERVICE_TYPES) {
    const service = services.find((s) => s.serviceType?.trim() === type && s.controlURL);
    if (service) return { location, serviceType: type, controlUrl: new URL(service.controlURL!.trim(), root.root?.URLBase?.trim() || location).href };
  }
  return undefined;
}

/**
 * Finds a router's port-mapping service on the LAN; undefined when none answers in `timeoutMs`.
 * With `gateway` known, only its answers are followed: any host on the LAN can answer an SSDP
 * search, and its LOCATION would otherwise make us fetch a URL of its choosing.
 */
export async function discoverIgd(localAddress: string, timeoutMs: number, gateway?: string): Promise<IgdService | undefined> {
  const locations = await ssdpSearch(localAddress, timeoutMs, gateway);
  for (const location of gateway ? locations.filter((l) => new URL(l).hostname === gateway) : locations) {
    try {
      const { status, text } = await fetchText(location, {}, timeoutMs);
      if (status !== 200) continue;
      const service = igdServiceFrom(location, text);
      if (service) return service;
    } catch {
      // Not a router we can use: try the next answer.
    }
  }
  return undefined;
}

const escapeXml = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** One SOAP action; its response's fields, or UpnpError. */
export async function soap(service: IgdService, action: string, args: Array<[string, string | number]>, timeoutMs = 3000): Promise<Record<string, string>> {
  const body =
    `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">` +
    `<s:Body><u:${action} xmlns:u="${service.serviceType}">${args.map(([k, v]) => `<${k}>${escapeXml(String(v))}</${k}>`).join('')}</u:${action}></s:Body></s:Envelope>\r\n`;
  const { status, text } = await fetchText(
    service.controlUrl,
    { method: 'POST', body, headers: { 'content-type': 'text/xml; charset="utf-8"', soapaction: `"${service.serviceType}#${action}"` } },
    timeoutMs,
  );
  const envelope = xml.parse(text) as { Envelope?: { Body?: Record<string, unknown> } };
  const answer = envelope.Envelope?.Body ?? {};
  const fault = answer['Fault'] as { detail?: { UPnPError?: { errorCode?: string; errorDescription?: string } } } | undefined;
  if (status !== 200 || fault) {
    const error = fault?.detail?.UPnPError;
    throw new UpnpError(Number(error?.errorCode ?? status), error?.errorDescription ?? `HTTP ${status}`);
  }
  const response = answer[`${action}Response`];
  return typeof response === 'object' && response !== null ? (response as Record<string, string>) : {};
}

/** The router's own public-side address. */
export async function igdExternalAddress(service: IgdService): Promise<string> {
  return String((await soap(service, 'GetExternalIPAddress', []))['NewExternalIPAddress'] ?? '');
}

/**
 * Maps TCP `externalPort` → internalHost:internalPort for `leaseSeconds` and returns the external
 * port the router granted (another one when it was taken). A router that allows only permanent
 * leases (error 725) gets one; the caller deletes it at stop.
 */
export async function igdMap(
  service: IgdService,
  o: { internalHost: string; internalPort: number; externalPort: number; leaseSeconds: number; description: string },
): Promise<{ externalPort: number; leaseSeconds: number }> {
  const args = (port: number, lease: number): Array<[string, string | number]> => [
    ['NewRemoteHost', ''],
    ['NewExternalPort', port],
    ['NewProtocol', 'TCP'],
    ['NewInternalPort', o.internalPort],
    ['NewInternalClient', o.internalHost],
    ['NewEnabled', 1],
    ['NewPortMappingDescription', o.description],
    ['NewLeaseDuration', lease],
  ];
  if (service.serviceType.endsWith('WANIPConnection:2')) {
    const answer = await soap(service, 'AddAnyPortMapping', args(o.externalPort, o.leaseSeconds));
    return { externalPort: Number(answer['NewReservedPort'] ?? o.externalPort), leaseSeconds: o.leaseSeconds };
  }
  let lease = o.leaseSeconds;
  const ports = [o.externalPort, ...Array.from({ length: 3 }, () => 1024 + Math.floor(Math.random() * (65535 - 1024)))];
  for (let i = 0; i < ports.length; i++) {
    try {
      await soap(service, 'AddPortMapping', args(ports[i]!, lease));
      return { externalPort: ports[i]!, leaseSeconds: lease };
    } catch (err) {
      if (err instanceof UpnpError && err.code === 725 && lease !== 0) {
        lease = 0;
        i--;
        continue;
      }
      if (!(err instanceof UpnpError && err.code === 718) || i === ports.length - 1) throw err;
    }
  }
  throw new UpnpError(718, 'ConflictInMappingEntry');
}

export async function igdUnmap(service: IgdService, externalPort: number): Promise<void> {
  await soap(service, 'DeletePortMapping', [
    ['NewRemoteHost', ''],
    ['NewExternalPort', externalPort],
    ['NewProtocol', 'TCP'],
  ]);
}
