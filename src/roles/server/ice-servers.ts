import { createHmac } from 'node:crypto';
import { formatUrl } from '../../net/listen.js';

/** The STUN and TURN servers the server tells give and get about (`GET /v1/ice-servers`). */
export interface IceServerOptions {
  /** `stun:HOST:PORT` URLs to hand out; empty: derived from `--stun-listen`. */
  stunUrls: readonly string[];
  /** Where `--stun-listen` listens, once it does (the port is known only after it started). */
  stunListen?: () => { host: string; port: number } | undefined;
  /** `turn:HOST:PORT[?transport=udp|tcp]` / `turns:` URLs of TURN servers sharing `turnSecret`. */
  turnUrls: readonly string[];
  /** The TURN REST API shared secret (coturn `static-auth-secret`). */
  turnSecret?: string;
  /** How long a TURN credential lasts. */
  turnTtlMs: number;
}

export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

/**
 * A TURN credential by the TURN REST API scheme (draft-uberti-behave-turn-rest, as coturn's
 * `use-auth-secret` checks it): the username is `EXPIRY:USER` (expiry in Unix seconds) and the
 * password base64(HMAC-SHA1(secret, username)). The TURN server needs no account database, and a
 * credential stops working at its expiry.
 */
export function turnCredential(secret: string, userId: string, expiresAtSeconds: number): { username: string; credential: string } {
  const username = `${expiresAtSeconds}:${userId}`;
  return { username, credential: createHmac('sha1', secret).update(username).digest('base64') };
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/**
 * The ICE servers for one user: STUN first, then TURN with a fresh credential. A STUN listener on
 * a wildcard address is named by the host the client reached the API at (its Host header).
 */
export function iceServersFor(o: IceServerOptions, userId: string, now: number, apiHost?: string): { iceServers: IceServer[]; expiresAt: number } {
  const iceServers: IceServer[] = [];
  const stun = [...o.stunUrls];
  const listening = o.stunListen?.();
  if (stun.length === 0 && listening) {
    const host = WILDCARDS.has(listening.host) ? apiHost : listening.host;
    if (host) stun.push(`stun:${formatUrl('http', host, listening.port).slice('http://'.length)}`);
  }
  if (stun.length) iceServers.push({ urls: stun });
  const expiresAt = now + o.turnTtlMs;
  if (o.turnUrls.length && o.turnSecret) iceServers.push({ urls: [...o.turnUrls], ...turnCredential(o.turnSecret, userId, Math.floor(expiresAt / 1000)) });
  return { iceServers, expiresAt };
}
