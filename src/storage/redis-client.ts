import { Redis, type RedisOptions } from 'ioredis';
import { LanternError } from '../core/errors.js';

/** Where a Redis is and how to trust it. */
export interface RedisEndpoint {
  /** redis://[[USER]:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS. */
  url: string;
  /** PEM CA certificate(s) a rediss:// server's certificate must chain to (else the system's CAs). */
  ca?: string;
}

/** An ioredis connection to the endpoint (every store, notifier and directory connection opens here). */
export function redisClient(endpoint: RedisEndpoint, options: RedisOptions): Redis {
  return new Redis(endpoint.url, { ...options, ...(endpoint.ca !== undefined ? { tls: { ca: endpoint.ca } } : {}) });
}

/**
 * Connects (a client made with lazyConnect). On failure the client stops retrying, so nothing keeps
 * the process alive, and the error names the cause Redis or TLS gave (a certificate that does not
 * verify, a wrong password, a refused connection) rather than ioredis' "Connection is closed".
 */
export async function connectRedis(client: Redis): Promise<void> {
  let cause: Error | undefined;
  const remember = (err: Error) => (cause ??= err);
  client.on('error', remember);
  try {
    await client.connect();
  } catch (err) {
    client.disconnect();
    const why = cause ?? (err as Error);
    throw new LanternError('LA_ERR_STORE_UNAVAILABLE', `Redis: ${why.message}`, { cause: why });
  } finally {
    client.off('error', remember);
  }
}
