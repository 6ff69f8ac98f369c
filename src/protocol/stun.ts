import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * STUN Binding (RFC 8489, formerly 5389), as much as an ICE agent needs from a server: it asks
 * "what address do you see me at?" and the answer's XOR-MAPPED-ADDRESS says. Nothing else is
 * answered: no classic RFC 3489 requests (no magic cookie), no other methods, no indications.
 */

export const STUN_MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const XOR_MAPPED_ADDRESS = 0x0020;
const HEADER = 20;
/** Requests larger than this are not bindings anyone sends (attributes are a few dozen bytes). */
export const MAX_STUN_REQUEST = 548;

/** The transaction id of a well-formed Binding request, or undefined for anything else. */
export function parseBindingRequest(msg: Buffer): Buffer | undefined {
  if (msg.length < HEADER || msg.length > MAX_STUN_REQUEST) return undefined;
  const type = msg.readUInt16BE(0);
  const length = msg.readUInt16BE(2);
  if (type !== BINDING_REQUEST || length !== msg.length - HEADER || length % 4 !== 0) return undefined;
  if (msg.readUInt32BE(4) !== STUN_MAGIC_COOKIE) return undefined;
  // Attributes must tile the body exactly (type, length, value padded to 4).
  let at = HEADER;
  while (at < msg.length) {
    if (at + 4 > msg.length) return undefined;
    at += 4 + Math.ceil(msg.readUInt16BE(at + 2) / 4) * 4;
  }
  if (at !== msg.length) return undefined;
  return msg.subarray(8, 20);
}

/** A Binding success response telling the requester `address`:`port` (XOR-MAPPED-ADDRESS only). */
export function bindingSuccess(transactionId: Buffer, address: string, port: number): Buffer {
  const v4 = isIPv4(address);
  if (!v4 && !isIPv6(address)) throw new Error(`not an IP address: ${address}`);
  const valueLength = v4 ? 8 : 20;
  const out = Buffer.alloc(HEADER + 4 + valueLength);
  out.writeUInt16BE(BINDING_SUCCESS, 0);
  out.writeUInt16BE(4 + valueLength, 2);
  out.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  transactionId.copy(out, 8);
  out.writeUInt16BE(XOR_MAPPED_ADDRESS, 20);
  out.writeUInt16BE(valueLength, 22);
  out.writeUInt8(v4 ? 1 : 2, 25);
  out.writeUInt16BE(port ^ (STUN_MAGIC_COOKIE >>> 16), 26);
  const raw = Buffer.from(ipaddr.parse(address).toByteArray());
  const key = Buffer.concat([out.subarray(4, 8), transactionId]);
  for (let i = 0; i < raw.length; i++) out.writeUInt8(raw[i]! ^ key[i]!, 28 + i);
  return out;
}

/** A Binding request with a fresh transaction id (for clients and tests). */
export function bindingRequest(transactionId: Buffer): Buffer {
  const out = Buffer.alloc(HEADER);
  out.writeUInt16BE(BINDING_REQUEST, 0);
  out.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  transactionId.copy(out, 8);
  return out;
}

/** The XOR-MAPPED-ADDRESS of a Binding success response for `transactionId`, or undefined. */
export function parseBindingSuccess(msg: Buffer, transactionId: Buffer): { address: string; port: number } | undefined {
  if (msg.length < HEADER || msg.readUInt16BE(0) !== BINDING_SUCCESS || msg.readUInt32BE(4) !== STUN_MAGIC_COOKIE) return undefined;
  if (!msg.subarray(8, 20).equals(transactionId)) return undefined;
  let at = HEADER;
  while (at + 4 <= msg.length) {
    const type = msg.readUInt16BE(at);
    const length = msg.readUInt16BE(at + 2);
    if (type === XOR_MAPPED_ADDRESS && at + 4 + length <= msg.length) {
      const family = msg.readUInt8(at + 5);
      const port = msg.readUInt16BE(at + 6) ^ (STUN_MAGIC_COOKIE >>> 16);
      const key = Buffer.concat([msg.subarray(4, 8), transactionId]);
      const raw = Buffer.from(msg.subarray(at + 8, at + 8 + (family === 1 ? 4 : 16)).map((b, i) => b ^ key[i]!));
      const address = ipaddr.fromByteArray([...raw]).toString();
      return { address, port };
    }
    at += 4 + Math.ceil(length / 4) * 4;
  }
  return undefined;
}
