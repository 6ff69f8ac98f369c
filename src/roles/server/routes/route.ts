import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiPath } from '../../../protocol/api-paths.js';
import type { AccountService } from '../accounts.js';
import type { AuthContext } from '../authenticator.js';
import type { ClientAddresses } from '../client-address.js';
import type { KeyService } from '../key-service.js';
import type { ServerComponents } from '../lantern-server.js';
import type { Mailbox } from '../mailbox.js';
import type { PeerSignals } from '../peer-signals.js';
import type { ServerOptions } from '../options.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** A request as a handler sees it: the body is read (within its deadline) before the handler runs. */
export interface OpenRequest {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** Values of the path's `:name` segments, decoded. */
  params: Record<string, string>;
  body: Buffer;
}

/** A request whose signature (LA1, or LA1S where allowed) has been checked. */
export interface AuthedRequest extends OpenRequest {
  auth: AuthContext;
}

/** One API route: open to anyone, or for signed requests (`device`: LA1 only, the device key). */
export type Route =
  | { method: Method; path: ApiPath; auth: 'none'; handle(r: OpenRequest): Promise<void> }
  | { method: Method; path: ApiPath; auth: 'signed' | 'device'; handle(r: AuthedRequest): Promise<void> };

export const open = (method: Method, path: ApiPath, handle: (r: OpenRequest) => Promise<void>): Route => ({ method, path, auth: 'none', handle });
export const signed = (method: Method, path: ApiPath, handle: (r: AuthedRequest) => Promise<void>, auth: 'signed' | 'device' = 'signed'): Route => ({ method, path, auth, handle });

/** What route modules work with: the server's components and options, and its services. */
export interface RouteContext {
  c: ServerComponents;
  options: ServerOptions;
  accounts: AccountService;
  mailbox: Mailbox;
  keys: KeyService;
  /** Who a request comes from (behind trusted proxies), and the keys per-address limits use. */
  clients: ClientAddresses;
  /** Peers a verifier should probe now (see PeerSignals). */
  probes: PeerSignals;
  /** Peers with a new verdict (their give peers wait for it). */
  verdicts: PeerSignals;
  /** Answers a request with an error, counted (for answers that come later, as a held poll's). */
  fail(res: ServerResponse, err: unknown): void;
  /** Takes a token from a rate-limit bucket, or throws LA_ERR_RATE_LIMITED. */
  limit(key: string, policy: ServerOptions['rate']['pair']): Promise<void>;
  /** Only verifier accounts may read candidates and post verdicts (LA_ERR_FORBIDDEN). */
  requireVerifier(auth: AuthContext): Promise<void>;
}

/** The device a signed request comes from. */
export const deviceOf = (auth: AuthContext) => ({ userId: auth.userId, deviceId: auth.deviceId });
