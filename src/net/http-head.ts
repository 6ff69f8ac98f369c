import { LanternError } from '../core/errors.js';
import type { ParseStep } from './handshake-reader.js';

/** Largest request head read (nginx: 1 KiB, then up to 4 × 8 KiB buffers). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** An HTTP/1.x request head as a proxy front end reads it (the first request of a connection). */
export interface HttpHead {
  method: string;
  /** The request target as sent: `host:port` (CONNECT), `http://…` (forward), `/path` (origin form). */
  target: string;
  /** `1.0` or `1.1`. */
  version: string;
  /** Header names in lower case, values trimmed, in order. */
  headers: Array<[string, string]>;
  /** The head's bytes exactly as received (to hand the request on unchanged). */
  raw: Buffer;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([\x21-\x7e]+) HTTP\/(1\.[01])$/;

const malformed = (what: string) => new LanternError('LA_ERR_PROTOCOL', `Malformed HTTP request head: ${what}`);

/** The end of the head (index after its blank line), accepting CRLF or bare LF line ends. */
function headEnd(b: Buffer): number {
  for (let i = b.indexOf(0x0a); i >= 0; i = b.indexOf(0x0a, i + 1)) {
    if (b[i + 1] === 0x0a) return i + 2;
    if (b[i + 1] === 0x0d && b[i + 2] === 0x0a) return i + 3;
    if (b[i + 1] === undefined || (b[i + 1] === 0x0d && b[i + 2] === undefined)) return -1;
  }
  return -1;
}

/**
 * Parse step for one request head (see HandshakeReader): undefined until the blank line arrives;
 * LA_ERR_PROTOCOL for anything that is not an HTTP/1.0 or 1.1 request head.
 */
export const httpHead: ParseStep<HttpHead> = (b) => {
  // Empty lines before the request line are ignored (RFC 9112 §2.2).
  let start = 0;
  while (b[start] === 0x0d || b[start] === 0x0a) start++;
  if (start > 8) throw malformed('empty lines');
  if (b.length > start && !TOKEN.test(String.fromCharCode(b[start]!))) throw malformed('request line');
  const end = headEnd(b.subarray(start));
  if (end < 0) return undefined;
  const text = b.subarray(start, start + end).toString('latin1');
  const lines = text.split(/\r?\n/);
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  const m = REQUEST_LINE.exec(lines[0] ?? '');
  if (!m) throw malformed('request line');
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw malformed('header line');
    const value = line.slice(colon + 1).trim();
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) throw malformed('header value');
    headers.push([name.toLowerCase(), value]);
  }
  return { value: { method: m[1]!, target: m[2]!, version: m[3]!, headers, raw: Buffer.from(b.subarray(0, start + end)) }, used: start + end };
};

/** The first value of a header (names in lower case), undefined when absent. */
export function headerValue(head: HttpHead, name: string): string | undefined {
  return head.headers.find(([n]) => n === name)?.[1];
}

/** `host:port` of a CONNECT target (IPv6 in brackets), or undefined when it is not one. */
export function connectTarget(target: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]/@?#\s]+):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** An HTTP/1.x response head (a proxy's answer to CONNECT). */
export interface HttpResponseHead {
  status: number;
  headers: Array<[string, string]>;
}

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/;

/** Parse step for a response head: undefined until the blank line arrives; LA_ERR_PROTOCOL if malformed. */
export const httpResponseHead: ParseStep<HttpResponseHead> = (b) => {
  const end = headEnd(b);
  if (end < 0) return undefined;
  const lines = b.subarray(0, end).toString('latin1').split(/\r?\n/).filter((l) => l !== '');
  const m = STATUS_LINE.exec(lines[0] ?? '');
  if (!m) throw malformed('status line');
  const headers: Array<[string, string]> = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw malformed('header line');
    headers.push([line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim()]);
  }
  return { value: { status: Number(m[1]), headers }, used: end };
};
