import type { IncomingMessage, ServerResponse } from 'node:http';
import { LanternError } from '../../core/errors.js';
import type { ErrorBody } from '../../protocol/messages.js';

/** Largest request body the API reads (key uploads with 100 Kyber prekeys are ~220 KB of JSON). */
export const MAX_BODY_BYTES = 512 * 1024;

export const EMPTY_BODY = Buffer.alloc(0);

/** The largest declared body whose rest is read and dropped after a 413 (see keepsAfterRefusal). */
export const LINGER_BYTES = 8 * 1024 * 1024;

/** Whether a request carries a body at all (a GET usually does not; then nothing is read). */
export function hasBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
}

/**
 * Reads the whole body, up to `limit` bytes (LA_ERR_BODY_TOO_LARGE beyond; checked before reading
 * when declared) and within `deadlineMs` (LA_ERR_REQUEST_TIMEOUT: a slow upload is cut off). A
 * client that goes away mid-upload is LA_ERR_CLIENT_GONE, not an internal error.
 */
export function readBody(req: IncomingMessage, options: { limit?: number; deadlineMs?: number } = {}): Promise<Buffer> {
  const limit = options.limit ?? MAX_BODY_BYTES;
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(new LanternError('LA_ERR_BODY_TOO_LARGE', `Request body exceeds ${limit} bytes`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const settle = (err: LanternError | undefined) => {
      if (timer) clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('close', onGone);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) return settle(new LanternError('LA_ERR_BODY_TOO_LARGE', `Request body exceeds ${limit} bytes`));
      chunks.push(chunk);
    };
    const onEnd = () => settle(undefined);
    const onGone = () => settle(new LanternError('LA_ERR_CLIENT_GONE'));
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onGone);
    req.once('close', onGone);
    if (options.deadlineMs) timer = setTimeout(() => settle(new LanternError('LA_ERR_REQUEST_TIMEOUT', `The request body did not arrive within ${options.deadlineMs} ms`)), options.deadlineMs);
  });
}

/**
 * Errors that cut a request off: a body too large, too slow, or a client gone. The connection
 * closes with the answer (but see keepsAfterRefusal).
 */
export const CLOSING_ERRORS: ReadonlySet<string> = new Set(['LA_ERR_BODY_TOO_LARGE', 'LA_ERR_REQUEST_TIMEOUT', 'LA_ERR_CLIENT_GONE']);

/**
 * Whether a 413 keeps the connection, the rest of the body being read and dropped: when the body
 * declares its length, up to LINGER_BYTES. Closing at once, with the client still sending, leaves
 * unread data in the socket, so the kernel resets the connection and the client's next write fails
 * with EPIPE before it reads the answer: 18 uploads of 2 MiB in 40 ended so on loopback, where the
 * client should have read LA_ERR_BODY_TOO_LARGE (nginx's lingering close is for the same thing).
 * A body of unknown or larger length still closes the connection with the answer: a connection kept
 * with `keep-alive` must not be closed later, when a client may already have sent the next request
 * on it. Node's server reads and drops the rest itself once the answer is sent; the request
 * deadline bounds it.
 */
function keepsAfterRefusal(req: IncomingMessage): boolean {
  const declared = Number(req.headers['content-length']);
  return !req.complete && req.headers['transfer-encoding'] === undefined && Number.isFinite(declared) && declared <= LINGER_BYTES;
}

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new LanternError('LA_ERR_MALFORMED_JSON', 'Request body is empty; a JSON object is expected');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new LanternError('LA_ERR_MALFORMED_JSON', undefined, { cause: err });
  }
}

/** Every answer is complete (Content-Length, never chunked) and never cached, so CDNs pass it through. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status = 204): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'cache-control': 'no-store', 'content-length': 0 });
  res.end();
}

export function errorBody(err: LanternError): ErrorBody {
  return {
    error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) },
  };
}

export function sendError(res: ServerResponse, err: LanternError): void {
  const kept = err.code === 'LA_ERR_BODY_TOO_LARGE' && keepsAfterRefusal(res.req);
  const headers: Record<string, string> = CLOSING_ERRORS.has(err.code) && !kept ? { connection: 'close' } : {};
  const retry = err.details?.['retryAfterMs'];
  if (typeof retry === 'number') headers['retry-after'] = String(Math.max(1, Math.ceil(retry / 1000)));
  sendJson(res, err.status, errorBody(err), headers);
}
