import type { IncomingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { finish } from '../../net/finish.js';

/**
 * What a give peer is to anyone without a valid ticket: Debian's nginx 1.22.1 with
 * `server_tokens off`, serving an empty root (`try_files $uri =404`, gzip on) over TLS with h2 and
 * http/1.1. Not an approximation of a web server but an emulation of that one, answer for answer:
 * the same status lines, the same headers in the same order (Date aside), the same bodies (its gzip
 * bytes too), the same keep-alive and close behaviour and the same timeouts. Its HTTP/1.x request
 * parser follows nginx's (src/http/ngx_http_parse.c) closely enough that it fails on the same byte:
 * `GET / HTTX` is answered before the line ends, `GET / HTTP/1.1` without CRLF is waited for.
 * A test sends a corpus of censors' probes to a real nginx with that configuration and to this, and
 * requires identical answers.
 */

/**
 * nginx's timeouts that a prober can observe. (send_timeout, 60 s, never comes into play: every
 * answer here is a few hundred bytes, which the kernel takes at once, as it does from nginx.)
 */
export interface NginxTimeouts {
  /** client_header_timeout: a request head must arrive within this (then the connection is closed silently). */
  headerMs: number;
  /** keepalive_timeout: an idle kept-alive connection is closed after this. */
  keepaliveMs: number;
}

/** nginx's defaults. */
export const NGINX_TIMEOUTS: NginxTimeouts = { headerMs: 60_000, keepaliveMs: 75_000 };

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Not Allowed',
  414: 'Request-URI Too Large',
  501: 'Not Implemented',
  505: 'HTTP Version Not Supported',
};

/** nginx's own error pages (ngx_http_special_response.c) with `server_tokens off`. */
function page(status: number): string {
  const tail = '<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';
  if (status === 494 || status === 497) {
    const why = status === 494 ? 'Request Header Or Cookie Too Large' : 'The plain HTTP request was sent to HTTPS port';
    return `<html>\r\n<head><title>400 ${why}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>${why}</center>\r\n${tail}`;
  }
  const line = `${status} ${REASONS[status]}`;
  return `<html>\r\n<head><title>${line}</title></head>\r\n<body>\r\n<center><h1>${line}</h1></center>\r\n${tail}`;
}

/**
 * The 404 page as nginx 1.22.1 gzips it (zlib level 1, with the window and memory sizes nginx picks
 * for a 146-byte body). Node's bundled zlib compresses the same input to other bytes, so these are
 * nginx's own; the comparison test checks them against a real nginx.
 */
const GZIPPED_404 = Buffer.from(
  '1f8b0800000000000403b3c928c9cdb1e3e5b2c9484d4cb1b329c92cc949b533313051f0cb2f5170cb2fcd4bb1d18708dae88395009526e5a75482b424a7e695a416d9d96418a2eb008ad8e843a541660315417979e9997915c872fa30d3f4a12e01000bd9613392000000',
  'hex',
);

const httpDate = () => new Date().toUTCString();

// ---- The HTTP/1.x request parser (nginx's states, enough of them to fail where nginx fails).

interface DecoyRequest {
  method: string;
  /** 9 for HTTP/0.9, else major * 1000 + minor. */
  version: number;
  path: string;
  /** The host named in an absolute-form target. */
  uriHost?: string;
  headers: Array<[string, string]>;
}

type Parsed = { kind: 'more' } | { kind: 'error'; status: number } | { kind: 'request'; request: DecoyRequest; used: number };

const LARGE_BUFFER = 8192;
const MAX_HEADERS = 4 * LARGE_BUFFER;
const isUpper = (c: number) => (c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x2d;
const isAlpha = (c: number) => (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;

/** A parser step: where the cursor is after it, and what it read; or how the whole parse ends. */
type Step<T> = { ok: true; i: number; value: T } | { ok: false; result: Parsed };
const fail = (status: number): { ok: false; result: Parsed } => ({ ok: false, result: { kind: 'error', status } });
const wait = (b: Buffer, start: number): { ok: false; result: Parsed } => ({ ok: false, result: more(b, start) });

/** Parses one request from `b` (the bytes not yet used), failing on the first byte nginx fails on. */
function parseRequest(b: Buffer): Parsed {
  let i = 0;
  while (i < b.length && (b[i] === CR || b[i] === LF)) i++;
  const start = i;
  // Method.
  if (i < b.length && !isUpper(b[i]!)) return { kind: 'error', status: 400 };
  while (i < b.length && b[i] !== SP) {
    if (!isUpper(b[i]!)) return { kind: 'error', status: 400 };
    i++;
  }
  if (i >= b.length) return i - start > LARGE_BUFFER ? { kind: 'error', status: 414 } : { kind: 'more' };
  const method = b.subarray(start, i).toString('latin1');
  while (i < b.length && b[i] === SP) i++;
  if (i >= b.length) return { kind: 'more' };
  const target = requestTarget(b, i, start);
  if (!target.ok) return target.result;
  const { path, uriHost } = target.value;
  const request = (version: number, headers: Array<[string, string]>): DecoyRequest => ({ method, version, path, ...(uriHost !== undefined ? { uriHost } : {}), headers });
  const version = httpVersion(b, target.i, start);
  if (!version.ok) return version.result;
  // HTTP/0.9: the line ended after the target (version 9, no headers).
  if (version.value === 9) return version.i - start > LARGE_BUFFER ? { kind: 'error', status: 414 } : { kind: 'request', request: request(9, []), used: version.i };
  // The request line must fit one large header buffer.
  if (version.i - start > LARGE_BUFFER) return { kind: 'error', status: 414 };
  const headers = headerLines(b, version.i);
  if (!headers.ok) return headers.result;
  return { kind: 'request', request: request(version.value, headers.value), used: headers.i };
}

/**
 * The request target: origin form (`/path`), or absolute form (`scheme://host[:port][/path]`,
 * whose host is kept). The cursor ends after the path (at the space, or the line's end).
 */
function requestTarget(b: Buffer, i: number, start: number): Step<{ path: string; uriHost?: string }> {
  let uriHost: string | undefined;
  let pathStart: number;
  if (b[i] === 0x2f) {
    pathStart = i;
  } else if (isAlpha(b[i]!)) {
    while (i < b.length && (isAlpha(b[i]!) || isDigit(b[i]!) || b[i] === 0x2b || b[i] === 0x2d || b[i] === 0x2e)) i++;
    if (i >= b.length) return wait(b, start);
    if (b[i] !== 0x3a) return fail(400);
    for (const expected of [0x3a, 0x2f, 0x2f]) {
      if (i >= b.length) return wait(b, start);
      if (b[i] !== expected) return fail(400);
      i++;
    }
    const hostStart = i;
    if (i < b.length && b[i] === 0x5b) {
      while (i < b.length && b[i] !== 0x5d) {
        const c = b[i]!;
        if (!(isDigit(c) || isAlpha(c) || c === 0x3a || c === 0x2e || c === 0x5b || c === 0x25 || c === 0x5f || c === 0x2d || c === 0x7e)) return fail(400);
        i++;
      }
      if (i >= b.length) return wait(b, start);
      i++;
    } else {
      while (i < b.length && (isAlpha(b[i]!) || isDigit(b[i]!) || b[i] === 0x2e || b[i] === 0x2d || b[i] === 0x5f)) i++;
    }
    uriHost = b.subarray(hostStart, i).toString('latin1');
    if (i < b.length && b[i] === 0x3a) {
      i++;
      while (i < b.length && isDigit(b[i]!)) i++;
    }
    if (i >= b.length) return wait(b, start);
    if (b[i] === SP) pathStart = -1;
    else if (b[i] === 0x2f) pathStart = i;
    else return fail(400);
  } else return fail(400);
  // Path up to the space before the version (or the end of an HTTP/0.9 line).
  let path = '/';
  if (pathStart >= 0) {
    i = pathStart;
    while (i < b.length && b[i] !== SP && b[i] !== CR && b[i] !== LF) {
      const c = b[i]!;
      if (c === 0 || (c < 0x20 && c !== 0x09) || c === 0x7f) return fail(400);
      i++;
    }
    if (i >= b.length) return wait(b, start);
    path = b.subarray(pathStart, i).toString('latin1');
  }
  return { ok: true, i, value: uriHost !== undefined ? { path, uriHost } : { path } };
}

/** The end of an HTTP/0.9 line (LF or CRLF) at `i`: the cursor after it. */
function lineEnd(b: Buffer, i: number, start: number): Step<number> | undefined {
  if (b[i] === LF) return { ok: true, i: i + 1, value: 9 };
  if (b[i] !== CR) return undefined;
  if (i + 1 >= b.length) return wait(b, start);
  return b[i + 1] === LF ? { ok: true, i: i + 2, value: 9 } : fail(400);
}

/**
 * After the target: the line's end (HTTP/0.9, version 9), or ` HTTP/major.minor` and the line's
 * end (version major * 1000 + minor; 505 above HTTP/1). The cursor ends after the line.
 */
function httpVersion(b: Buffer, i: number, start: number): Step<number> {
  const ended = lineEnd(b, i, start);
  if (ended) return ended;
  while (i < b.length && b[i] === SP) i++;
  if (i >= b.length) return wait(b, start);
  const ended09 = lineEnd(b, i, start);
  if (ended09) return ended09;
  for (const expected of [0x48, 0x54, 0x54, 0x50, 0x2f]) {
    if (i >= b.length) return wait(b, start);
    if (b[i] !== expected) return fail(400);
    i++;
  }
  if (i >= b.length) return wait(b, start);
  if (b[i]! < 0x31 || b[i]! > 0x39) return fail(400);
  let major = 0;
  while (i < b.length && isDigit(b[i]!)) {
    major = major * 10 + (b[i]! - 0x30);
    if (major > 99) return fail(400);
    i++;
  }
  if (i >= b.length) return wait(b, start);
  if (b[i] !== 0x2e) return fail(400);
  if (major > 1) return fail(505);
  i++;
  if (i >= b.length) return wait(b, start);
  if (!isDigit(b[i]!)) return fail(400);
  let minor = 0;
  while (i < b.length && isDigit(b[i]!)) {
    minor = minor * 10 + (b[i]! - 0x30);
    if (minor > 99) return fail(400);
    i++;
  }
  while (i < b.length && b[i] === SP) i++;
  if (i >= b.length) return wait(b, start);
  if (b[i] === CR) {
    i++;
    if (i >= b.length) return wait(b, start);
  }
  if (b[i] !== LF) return fail(400);
  return { ok: true, i: i + 1, value: major * 1000 + minor };
}

/** Header lines from `i` to the empty line (names lowercased; names nginx finds invalid are skipped). */
function headerLines(b: Buffer, i: number): Step<Array<[string, string]>> {
  const headers: Array<[string, string]> = [];
  const headStart = i;
  for (;;) {
    if (i - headStart > MAX_HEADERS) return fail(494);
    const nl = b.indexOf(LF, i);
    if (nl < 0) return b.length - i > LARGE_BUFFER || b.length - headStart > MAX_HEADERS ? fail(494) : { ok: false, result: { kind: 'more' } };
    let line = b.subarray(i, nl);
    if (line.length > LARGE_BUFFER) return fail(494);
    i = nl + 1;
    if (line.length && line[line.length - 1] === CR) line = line.subarray(0, -1);
    if (line.length === 0) return { ok: true, i, value: headers };
    if (line.includes(0)) return fail(400);
    if (line[0] === SP || line[0] === 0x09) return fail(400);
    const colon = line.indexOf(0x3a);
    if (colon < 0) return fail(400);
    const name = line.subarray(0, colon).toString('latin1');
    // Invalid characters (underscores included) make nginx ignore the header, not refuse the request.
    if (!/^[A-Za-z0-9-]+$/.test(name)) continue;
    headers.push([name.toLowerCase(), line.subarray(colon + 1).toString('latin1').replace(/^[ \t]+|[ \t]+$/g, '')]);
  }
}

/** A request line that has not ended yet: nginx waits, unless it has outgrown its buffer (414). */
const more = (b: Buffer, start: number): Parsed => (b.length - start > LARGE_BUFFER ? { kind: 'error', status: 414 } : { kind: 'more' });

/** nginx's ngx_http_validate_host. */
function validHost(host: string): boolean {
  let dot = -1;
  let len = host.length;
  let state: 'usual' | 'literal' | 'rest' = 'usual';
  for (let i = 0; i < host.length; i++) {
    const c = host.charCodeAt(i);
    if (c === 0x2e) {
      if (dot === i - 1) return false;
      dot = i;
    } else if (c === 0x3a) {
      if (state === 'usual') {
        len = i;
        state = 'rest';
      }
    } else if (c === 0x5b) {
      if (i === 0) state = 'literal';
    } else if (c === 0x5d) {
      if (state === 'literal') {
        len = i + 1;
        state = 'rest';
      }
    } else if (c === 0x2f || c === 0x5c || c <= 0x20 || c === 0x7f) return false;
  }
  if (dot === len - 1) len--;
  return len > 0;
}

/** nginx's complex-URI rules that matter here: %XX decoding (%00 refused) and no `..` above the root. */
function validPath(path: string): boolean {
  const raw = path.split('?')[0]!;
  let decoded = '';
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== '%') {
      decoded += raw[i];
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return false;
    const c = parseInt(hex, 16);
    if (c === 0) return false;
    decoded += String.fromCharCode(c);
    i += 2;
  }
  let depth = 0;
  for (const seg of decoded.split('/').slice(1)) {
    if (seg === '..') {
      if (--depth < 0) return false;
    } else if (seg !== '.' && seg !== '') depth++;
  }
  return true;
}

/** Whether an Accept-Encoding value accepts gzip (nginx: the token, and a q-value that is not 0). */
function acceptsGzip(value: string | undefined): boolean {
  if (!value) return false;
  const m = /(?:^|[\s,])gzip\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*(?:,|$)/i.exec(value);
  if (!m) return false;
  return m[1] === undefined || Number(m[1]) > 0;
}

interface Decision {
  status: number;
  keepAlive: boolean;
  /** Bytes of request body still to be read (and dropped) before the next request; -1: chunked. */
  body: number;
}

function decide(request: DecoyRequest, plainOnTlsPort: boolean): Decision {
  const close = (status: number): Decision => ({ status, keepAlive: false, body: 0 });
  const all = (name: string) => request.headers.filter(([n]) => n === name).map(([, v]) => v);
  const hosts = all('host');
  if (hosts.length > 1) return close(400);
  if (request.version === 9) return { status: plainOnTlsPort ? 497 : 404, keepAlive: false, body: 0 };
  const host = request.uriHost ?? hosts[0];
  if (host !== undefined && !validHost(host)) return close(400);
  if (request.version >= 1001 && host === undefined) return close(400);
  const lengths = all('content-length');
  if (lengths.length > 1) return close(400);
  let body = 0;
  if (lengths.length === 1) {
    if (!/^[0-9]{1,18}$/.test(lengths[0]!)) return close(400);
    body = Number(lengths[0]);
  }
  const te = all('transfer-encoding');
  if (te.length) {
    if (request.version < 1001) return close(400);
    if (te.length > 1 || te[0]!.toLowerCase() !== 'chunked') return close(501);
    if (lengths.length) return close(400);
    body = -1;
  }
  if (request.method === 'TRACE') return close(405);
  if (!validPath(request.path)) return close(400);
  if (plainOnTlsPort) return close(497);
  const connection = (all('connection')[0] ?? '').toLowerCase();
  const keepAlive = request.version >= 1001 ? !/(?:^|[\s,])close(?:[\s,]|$)/.test(connection) : /(?:^|[\s,])keep-alive(?:[\s,]|$)/.test(connection);
  return { status: 404, keepAlive, body };
}

/** The bytes of one answer. */
function answer(d: Decision, request: DecoyRequest | undefined): Buffer {
  const status = d.status === 494 || d.status === 497 ? 400 : d.status;
  const body = page(d.status);
  // HTTP/0.9 has no status line and no headers: the page alone.
  if (request?.version === 9) return Buffer.from(body, 'latin1');
  const head = [`HTTP/1.1 ${status} ${REASONS[status]}`, 'Server: nginx', `Date: ${httpDate()}`, 'Content-Type: text/html'];
  const gzip = d.status === 404 && request !== undefined && request.version >= 1001 && acceptsGzip(request.headers.find(([n]) => n === 'accept-encoding')?.[1]);
  const headOnly = request?.method === 'HEAD';
  if (gzip) {
    if (!headOnly) head.push('Transfer-Encoding: chunked');
    head.push(`Connection: ${d.keepAlive ? 'keep-alive' : 'close'}`, 'Content-Encoding: gzip');
    const text = `${head.join('\r\n')}\r\n\r\n`;
    if (headOnly) return Buffer.from(text, 'latin1');
    return Buffer.concat([Buffer.from(`${text}${GZIPPED_404.length.toString(16)}\r\n`, 'latin1'), GZIPPED_404, Buffer.from('\r\n0\r\n\r\n', 'latin1')]);
  }
  head.push(`Content-Length: ${Buffer.byteLength(body)}`, `Connection: ${d.keepAlive ? 'keep-alive' : 'close'}`);
  return Buffer.from(`${head.join('\r\n')}\r\n\r\n${headOnly ? '' : body}`, 'latin1');
}

/** Drops a chunked body; how many bytes of `b` it used, or undefined when more are needed (-2: malformed). */
function skipChunked(b: Buffer): number | undefined {
  let i = 0;
  for (;;) {
    const nl = b.indexOf(LF, i);
    if (nl < 0) return b.length - i > 4096 ? -2 : undefined;
    const size = parseInt(b.subarray(i, nl).toString('latin1').split(';')[0]!.trim(), 16);
    if (!Number.isFinite(size) || size < 0) return -2;
    if (size === 0) {
      // Trailers, to the empty line.
      let j = nl + 1;
      for (;;) {
        const end = b.indexOf(LF, j);
        if (end < 0) return undefined;
        const line = b.subarray(j, end);
        j = end + 1;
        if (line.length === 0 || (line.length === 1 && line[0] === CR)) return j;
      }
    }
    const next = nl + 1 + size;
    if (b.length < next + 1) return undefined;
    i = b[next] === CR ? next + 2 : next + 1;
    if (i > b.length) return undefined;
  }
}

/**
 * The emulation, per connection. `serve` takes a connection (raw on the TLS port, or inside TLS)
 * with the bytes already read from it; `answerStream` answers one HTTP/2 stream.
 */
export class NginxDecoy {
  readonly #t: NginxTimeouts;

  constructor(timeouts: NginxTimeouts = NGINX_TIMEOUTS) {
    this.#t = timeouts;
  }

  /**
   * Serves a connection as nginx would, from `initial` on. `plainOnTlsPort`: plain bytes arrived
   * on the TLS port (nginx's answer is then its "plain HTTP request was sent to HTTPS port" page).
   */
  serve(socket: Duplex, initial: Buffer, options: { plainOnTlsPort: boolean; startedAt?: number }): void {
    let buffered = initial;
    let skipping = 0;
    let chunked = false;
    let closing = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = (ms: number) => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        closing = true;
        finish(socket);
      }, Math.max(0, ms));
    };
    // Waiting for a request: client_header_timeout from the start of the connection.
    arm(this.#t.headerMs - (Date.now() - (options.startedAt ?? Date.now())));
    let waitingForNext = false;
    const send = (bytes: Buffer, keepAlive: boolean) => {
      socket.write(bytes);
      if (!keepAlive) {
        closing = true;
        if (timer) clearTimeout(timer);
        finish(socket);
      }
    };
    const step = () => {
      while (!closing) {
        if (skipping !== 0) {
          if (chunked) {
            const used = skipChunked(buffered);
            if (used === undefined) return;
            if (used === -2) {
              closing = true;
              return finish(socket);
            }
            buffered = buffered.subarray(used);
            skipping = 0;
            chunked = false;
          } else {
            const take = Math.min(skipping, buffered.length);
            buffered = buffered.subarray(take);
            skipping -= take;
            if (skipping > 0) return;
          }
        }
        if (waitingForNext && buffered.length > 0) {
          // The next request has begun: its head must arrive within client_header_timeout.
          waitingForNext = false;
          arm(this.#t.headerMs);
        }
        const parsed = parseRequest(buffered);
        if (parsed.kind === 'more') return;
        if (parsed.kind === 'error') return send(answer({ status: parsed.status, keepAlive: false, body: 0 }, undefined), false);
        buffered = buffered.subarray(parsed.used);
        const d = decide(parsed.request, options.plainOnTlsPort);
        send(answer(d, parsed.request), d.keepAlive);
        if (!d.keepAlive) return;
        if (d.body === -1) {
          chunked = true;
          skipping = -1;
        } else skipping = d.body;
        waitingForNext = true;
        arm(this.#t.keepaliveMs);
      }
    };
    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
      step();
    });
    socket.on('error', () => socket.destroy());
    socket.once('close', () => timer && clearTimeout(timer));
    step();
    if (socket.isPaused?.()) socket.resume();
  }

  /** Answers an HTTP/2 stream as nginx's http2 module would (404 page, 400 for CONNECT, 405 for TRACE). */
  answerStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const method = String(headers[':method'] ?? '');
    const path = headers[':path'];
    let status = 404;
    if (method === 'CONNECT' || typeof path !== 'string' || !path.startsWith('/')) status = 400;
    else if (method === 'TRACE') status = 405;
    else if (!validPath(path)) status = 400;
    const gzip = status === 404 && acceptsGzip(typeof headers['accept-encoding'] === 'string' ? headers['accept-encoding'] : undefined);
    const body = gzip ? GZIPPED_404 : Buffer.from(page(status), 'latin1');
    const out: Record<string, string | number> = { ':status': status, server: 'nginx', date: httpDate(), 'content-type': 'text/html' };
    if (gzip) out['content-encoding'] = 'gzip';
    else out['content-length'] = body.length;
    stream.on('error', () => undefined);
    if (stream.destroyed || stream.closed) return;
    stream.respond(out, { endStream: method === 'HEAD' });
    if (method !== 'HEAD') stream.end(body);
  }
}
