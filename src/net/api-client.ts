import { Agent, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import type { Clock } from '../core/clock.js';
import { LanternError, isErrorCode } from '../core/errors.js';
import {
  AckResponse,
  ErrorBody,
  LoginResponse,
  PollResponse,
  SendResponse,
  WhoamiResponse,
  type LoginRequest,
  type SendRequest,
} from '../protocol/messages.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../protocol/version.js';

/** Produces the Authorization header for a request (see crypto/request-signature.ts). */
export type Authorize = (method: string, path: string, body: string, now: number) => string;

export interface ApiClientOptions {
  /** Base URL of the server, e.g. https://signal.example:8443 */
  server: string;
  /** Extra CA certificates (PEM) to trust for the server's TLS. */
  ca?: string;
  dispatcher?: Dispatcher;
}

/** Makes the undici dispatcher for talking to one server (the one place that creates Agents). */
export function createDispatcher(options: { ca?: string } = {}): Agent {
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 64,
    ...(options.ca ? { connect: { ca: options.ca } } : {}),
  });
}

/** Client of the server HTTP API v1. Every answer is validated against its schema. */
export class ApiClient {
  readonly server: string;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #clock: Clock;
  readonly #authorize: Authorize | undefined;

  constructor(components: { clock: Clock; authorize?: Authorize }, options: ApiClientOptions) {
    this.server = options.server.replace(/\/+$/, '');
    this.#clock = components.clock;
    this.#authorize = components.authorize;
    this.#ownsDispatcher = options.dispatcher === undefined;
    this.#dispatcher = options.dispatcher ?? createDispatcher(options.ca ? { ca: options.ca } : {});
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  login(body: LoginRequest): Promise<LoginResponse> {
    return this.#call('POST', '/v1/login', body, LoginResponse, { signed: false });
  }

  whoami(): Promise<z.infer<typeof WhoamiResponse>> {
    return this.#call('GET', '/v1/whoami', undefined, WhoamiResponse);
  }

  send(body: SendRequest): Promise<SendResponse> {
    return this.#call('POST', '/v1/messages', body, SendResponse);
  }

  /** Long-poll; `undefined` when the wait ended with nothing (204). */
  poll(waitSeconds: number, limit = 100, signal?: AbortSignal): Promise<PollResponse | undefined> {
    return this.#call('GET', `/v1/messages?wait=${waitSeconds}&limit=${limit}`, undefined, PollResponse, {
      timeoutMs: (waitSeconds + 30) * 1000,
      ...(signal ? { signal } : {}),
    });
  }

  ack(ids: string[]): Promise<number> {
    return this.#call('POST', '/v1/messages/ack', { ids }, AckResponse).then((r) => r.acked);
  }

  async #call<S extends z.ZodType>(
    method: string,
    path: string,
    body: unknown,
    schema: S,
    opts: { signed?: boolean; timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<z.output<S>> {
    const text = body === undefined ? '' : JSON.stringify(body);
    const headers: Record<string, string> = { [VERSION_HEADER]: String(PROTOCOL_VERSION) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (opts.signed !== false) {
      if (!this.#authorize) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
      headers['authorization'] = this.#authorize(method, path, text, this.#clock.now());
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.server}${path}`, {
        method: method as Dispatcher.HttpMethod,
        headers,
        body: body === undefined ? null : text,
        dispatcher: this.#dispatcher,
        headersTimeout: opts.timeoutMs ?? 30_000,
        bodyTimeout: opts.timeoutMs ?? 30_000,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (err) {
      if ((err as { name?: string }).name === 'AbortError') throw err;
      throw new LanternError('LA_ERR_SERVER_UNREACHABLE', `Cannot reach ${this.server}: ${(err as Error).message}`, { cause: err });
    }
    const raw = await res.body.text().catch(() => '');
    if (res.statusCode === 204) return undefined as z.output<S>;
    let json: unknown;
    try {
      json = raw ? JSON.parse(raw) : undefined;
    } catch {
      json = undefined;
    }
    if (res.statusCode >= 400) {
      const parsed = ErrorBody.safeParse(json);
      if (parsed.success && isErrorCode(parsed.data.error.code)) {
        const details: Record<string, unknown> = { ...parsed.data.error.details, status: res.statusCode };
        const retry = res.headers['retry-after'];
        if (typeof retry === 'string') details['retryAfterMs'] ??= Number(retry) * 1000;
        throw new LanternError(parsed.data.error.code, parsed.data.error.message, { details });
      }
      throw new LanternError('LA_ERR_SERVER_RESPONSE', `Server answered ${res.statusCode}`, { details: { status: res.statusCode } });
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) {
      throw new LanternError('LA_ERR_SERVER_RESPONSE', `Server answer to ${method} ${path} does not match the protocol`);
    }
    return parsed.data;
  }
}
