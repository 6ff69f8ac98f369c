import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv4 } from 'node:net';

/**
 * PCP (RFC 6887) MAP requests to the home router, falling back to NAT-PMP (RFC 6886) when the
 * router answers that it speaks only version 0. Both run over UDP port 5351 of the default
 * gateway; each request is sent again after 250, 500 and 1000 ms (RFC 6886 §3.1, cut short:
 * a router on the LAN answers in milliseconds or not at all).
 */

export const PCP_PORT = 5351;
const RETRY_MS = [250, 500, 1000];

/** A mapping the router granted. */
export interface GrantedMapping {
  protocol: 'pcp' | 'nat-pmp';
  externalHost: string;
  externalPort: number;
  lifetimeSeconds: number;
}

/** The router said no: `code` is the protocol's result code, `reason` its name. */
export class MappingRefused extends Error {
  constructor(
    readonly protocol: 'pcp' | 'nat-pmp',
    readonly code: number,
    readonly reason: string,
  ) {
    super(`${protocol} refused: ${reason} (${code})`);
  }
}

const PCP_RESULTS: Record<number, string> = {
  1: 'UNSUPP_VERSION',
  2: 'NOT_AUTHORIZED',
  3: 'MALFORMED_REQUEST',
  4: 'UNSUPP_OPCODE',
  5: 'UNSUPP_OPTION',
  6: 'MALFORMED_OPTION',
  7: 'NETWORK_FAILURE',
  8: 'NO_RESOURCES',
  9: 'UNSUPP_PROTOCOL',
  10: 'USER_EX_QUOTA',
  11: 'CANNOT_PROVIDE_EXTERNAL',
  12: 'ADDRESS_MISMATCH',
  13: 'EXCESSIVE_REMOTE_PEERS',
};
const PMP_RESULTS: Record<number, string> = { 1: 'UNSUPPORTED_VERSION', 2: 'NOT_AUTHORIZED', 3: 'NETWORK_FAILURE', 4: 'OUT_OF_RESOURCES', 5: 'UNSUPPORTED_OPCODE' };

/** An IPv4 address as PCP writes it: IPv4-mapped IPv6 (::ffff:a.b.c.d), 16 bytes. */
function mappedV4(address: string): Buffer {
  const out = Buffer.alloc(16);
  out.writeUInt16BE(0xffff, 10);
  address.split('.').forEach((octet, i) => out.writeUInt8(Number(octet), 12 + i));
  return out;
}

function readMappedV4(buf: Buffer, at: number): string {
  return [0, 1, 2, 3].map((i) => buf.readUInt8(at + 12 + i)).join('.');
}

/** A PCP MAP request for TCP (RFC 6887 §7.1 and §11.1); lifetime 0 deletes the mapping. */
export function pcpMapRequest(o: { clientAddress: string; nonce: Buffer; internalPort: number; externalPort: number; lifetimeSeconds: number }): Buffer {
  const buf = Buffer.alloc(60);
  buf.writeUInt8(2, 0); // version
  buf.writeUInt8(1, 1); // R=0, opcode MAP
  buf.writeUInt32BE(o.lifetimeSeconds, 4);
  mappedV4(o.clientAddress).copy(buf, 8);
  o.nonce.copy(buf, 24);
  buf.writeUInt8(6, 36); // TCP
  buf.writeUInt16BE(o.internalPort, 40);
  buf.writeUInt16BE(o.externalPort, 42);
  mappedV4('0.0.0.0').copy(buf, 44); // any external address
  return buf;
}

/** The answer to a MAP request, or undefined when `msg` is not one (another nonce, a stray packet). */
export function parsePcpMapResponse(msg: Buffer, nonce: Buffer): { result: number; lifetimeSeconds: number; externalPort: number; externalHost: string } | { result: number; version: 0 } | undefined {
  if (msg.length >= 4 && msg.readUInt8(0) === 0) return { result: msg.readUInt16BE(2), version: 0 }; // a NAT-PMP-only router
  if (msg.length < 60 || msg.readUInt8(0) !== 2 || msg.readUInt8(1) !== 0x81) return undefined;
  if (!msg.subarray(24, 36).equals(nonce)) return undefined;
  return { result: msg.readUInt8(3), lifetimeSeconds: msg.readUInt32BE(4), externalPort: msg.readUInt16BE(42), externalHost: readMappedV4(msg, 44) };
}

/** Sends `request` to the gateway and resolves with the first answer `accept` takes, retrying on silence. */
async function exchange<T>(gateway: string, request: Buffer, accept: (msg: Buffer) => T | undefined, signal?: AbortSignal, port = PCP_PORT): Promise<T | undefined> {
  const socket: Socket = createSocket('udp4');
  try {
    return await new Promise<T | undefined>((resolve, reject) => {
      let attempt = 0;
      let timer: NodeJS.Timeout | undefined;
      const finish = (value: T | undefined) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(value);
      };
      const onAbort = () => finish(undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.on('message', (msg, rinfo) => {
        if (rinfo.address !== gateway || rinfo.port !== port) return;
        const value = accept(msg);
        if (value !== undefined) finish(value);
      });
      const send = () => {
        if (attempt >= RETRY_MS.length) return finish(undefined);
        socket.send(request, port, gateway);
        timer = setTimeout(send, RETRY_MS[attempt++]);
      };
      socket.bind(0, send);
    });
  } finally {
    socket.close();
  }
}

/** Asks the gateway for a TCP mapping by PCP, then NAT-PMP; undefined when it does not answer. */
export async function pcpMap(
  o: { gateway: string; clientAddress: string; internalPort: number; externalPort: number; lifetimeSeconds: number; nonce?: Buffer; signal?: AbortSignal; port?: number },
): Promise<GrantedMapping & { nonce: Buffer } | undefined> {
  if (!isIPv4(o.gateway) || !isIPv4(o.clientAddress)) return undefined;
  const nonce = o.nonce ?? randomBytes(12);
  const answer = await exchange(o.gateway, pcpMapRequest({ ...o, nonce }), (msg) => parsePcpMapResponse(msg, nonce), o.signal, o.port);
  if (!answer) return undefined;
  if ('version' in answer) {
    if (answer.result !== 1) throw new MappingRefused('nat-pmp', answer.result, PMP_RESULTS[answer.result] ?? 'unknown');
    const pmp = await natPmpMap(o);
    return pmp && { ...pmp, nonce };
  }
  if (answer.result !== 0) throw new MappingRefused('pcp', answer.result, PCP_RESULTS[answer.result] ?? 'unknown');
  return { protocol: 'pcp', externalHost: answer.externalHost, externalPort: answer.externalPort, lifetimeSeconds: answer.lifetimeSeconds, nonce };
}

/** NAT-PMP: the external address (opcode 0), then a TCP mapping (opcode 2). */
export async function natPmpMap(o: { gateway: string; internalPort: number; externalPort: number; lifetimeSeconds: number; signal?: AbortSignal; port?: number }): Promise<GrantedMapping | undefined> {
  let externalHost = '';
  if (o.lifetimeSeconds > 0) {
    const address = await exchange(o.gateway, Buffer.from([0, 0]), (msg) => (msg.length >= 12 && msg.readUInt8(1) === 128 ? msg : undefined), o.signal, o.port);
    if (!address) return undefined;
    const result = address.readUInt16BE(2);
    if (result !== 0) throw new MappingRefused('nat-pmp', result, PMP_RESULTS[result] ?? 'unknown');
    externalHost = [8, 9, 10, 11].map((i) => address.readUInt8(i)).join('.');
  }
  const request = Buffer.alloc(12);
  request.writeUInt8(2, 1); // TCP
  request.writeUInt16BE(o.internalPort, 4);
  request.writeUInt16BE(o.lifetimeSeconds > 0 ? o.externalPort : 0, 6);
  request.writeUInt32BE(o.lifetimeSeconds, 8);
  const answer = await exchange(o.gateway, request, (msg) => (msg.length >= 16 && msg.readUInt8(1) === 130 && msg.readUInt16BE(8) === o.internalPort ? msg : undefined), o.signal, o.port);
  if (!answer) return undefined;
  const result = answer.readUInt16BE(2);
  if (result !== 0) throw new MappingRefused('nat-pmp', result, PMP_RESULTS[result] ?? 'unknown');
  return { protocol: 'nat-pmp', externalHost, externalPort: answer.readUInt16BE(10), lifetimeSeconds: answer.readUInt32BE(12) };
}

/** Deletes a mapping (lifetime 0), by the protocol that made it. Silence is not an error: the lease runs out. */
export async function pcpUnmap(o: { gateway: string; clientAddress: string; internalPort: number; protocol: 'pcp' | 'nat-pmp'; nonce: Buffer; port?: number }): Promise<void> {
  if (o.protocol === 'nat-pmp') await natPmpMap({ ...o, externalPort: 0, lifetimeSeconds: 0 });
  else await pcpMap({ ...o, externalPort: 0, lifetimeSeconds: 0 });
}
