/**
 * The paths of the HTTP API v1, one place for the server's routes and the client's calls. A
 * `:name` segment is a parameter (`apiPath` fills it in).
 */
export const API = {
  health: '/v1/health',
  login: '/v1/login',
  session: '/v1/session',
  whoami: '/v1/whoami',
  keys: '/v1/keys',
  keyCount: '/v1/keys/count',
  bundles: '/v1/keys/:userId',
  bundle: '/v1/keys/:userId/:deviceId',
  tickets: '/v1/tickets',
  ticketKey: '/v1/tickets/key',
  peers: '/v1/peers',
  peerHeartbeat: '/v1/peers/heartbeat',
  peerSelf: '/v1/peers/self',
  roundRobin: '/v1/peers/round-robin',
  verdict: '/v1/peers/:peerId/verdict',
  probeRequests: '/v1/peers/probe-requests',
  peerReport: '/v1/peers/report',
  peerReachability: '/v1/peers/reachability',
  iceServers: '/v1/ice-servers',
  canary: '/v1/canary',
  canaryContent: '/v1/canary/:nonce',
  messages: '/v1/messages',
  messageBatch: '/v1/messages/batch',
  ack: '/v1/messages/ack',
} as const;

export type ApiPath = (typeof API)[keyof typeof API];

/** The parameters a path template names. */
type Params<P extends string> = P extends `${string}:${infer Name}/${infer Rest}` ? Name | Params<`/${Rest}`> : P extends `${string}:${infer Name}` ? Name : never;

/** A path with its `:name` segments filled in (each URI-encoded). */
export function apiPath<P extends ApiPath>(template: P, params: Record<Params<P>, string | number>): string {
  return template.replace(/:(\w+)/g, (_m, name: string) => encodeURIComponent(String((params as Record<string, string | number>)[name])));
}

/** Public resources: no version header needed (health checks, canaries fetched through give peers). */
export const UNVERSIONED_PREFIXES = [API.health, '/v1/canary/'] as const;
