import type { Redis, RedisOptions } from 'ioredis';
import { LanternError } from '../core/errors.js';

/** Where a Redis is and how to trust it. */
export interface RedisEndpoint {
  /**
   * redis://[[USER]:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS. Several HOST:PORT, separated by
   * commas, are seed nodes of a Redis Cluster; one is a cluster too if the server says it is one.
   */
  url: string;
  /** PEM CA certificate(s) a rediss:// server's certificate must chain to (else the system's CAs). */
  ca?: string;
}

/**
 * A connection to one Redis or to a Redis Cluster. ioredis' Cluster answers the same commands
 * (following MOVED and ASK, reconnecting to promoted replicas); it is typed as Redis here, and
 * `isCluster` tells the few places that must act differently (commands over keys of several slots,
 * sharded pub/sub).
 */
export type RedisConnection = Redis;

export const isCluster = (r: RedisConnection): boolean => (r as unknown as { isCluster?: boolean }).isCluster === true;

interface ParsedEndpoint {
  tls: boolean;
  username?: string;
  password?: string;
  db: number;
  nodes: Array<{ host: string; port: number }>;
}

/** Parses redis[s]://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/DB]. */
export function parseRedisUrl(url: string): ParsedEndpoint | undefined {
  const m = /^(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@\s]+?)(?:\/(\d{1,2}))?$/.exec(url);
  if (!m) return undefined;
  const nodes: Array<{ host: string; port: number }> = [];
  for (const part of m[4]!.split(',')) {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(part);
    if (!hp) return undefined;
    const port = Number(hp[2] ?? 6379);
    if (port < 1 || port > 65535) return undefined;
    nodes.push({ host: hp[1]!.replace(/^\[|\]$/g, ''), port });
  }
  const decode = (s: string | undefined) => (s ? decodeURIComponent(s) : undefined);
  const username = decode(m[2]);
  const password = decode(m[3]);
  return { tls: m[1] === 'rediss', ...(username ? { username } : {}), ...(password !== undefined ? { password } : {}), db: Number(m[5] ?? 0), nodes };
}

function nodeOptions(endpoint: RedisEndpoint, parsed: ParsedEndpoint, options: RedisOptions): RedisOptions {
  return {
    ...options,
    ...(parsed.username ? { username: parsed.username } : {}),
    ...(parsed.password !== undefined ? { password: parsed.password } : {}),
    ...(parsed.tls ? { tls: endpoint.ca !== undefined ? { ca: endpoint.ca } : {} } : {}),
  };
}

/**
 * Opens a connection for every store, notifier and directory: one Redis, or, when the URL names
 * several nodes or its one node runs with cluster-enabled, ioredis' cluster client (a cluster has
 * only database 0). On failure nothing keeps retrying, and the error names the cause Redis or TLS
 * gave (a certificate that does not verify, a wrong password, a refused connection) rather than
 * ioredis' "Connection is closed".
 */
export async function openRedis(endpoint: RedisEndpoint, options: RedisOptions, cluster: { shardedSubscribers?: boolean } = {}): Promise<RedisConnection> {
  const parsed = parseRedisUrl(endpoint.url);
  if (!parsed) throw new LanternError('LA_ERR_USAGE', 'expected redis[s]://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/DB]');
  // Loaded here, not at startup: a server on the embedded store never needs it (~0.2 CPU-s to load).
  const { Cluster, Redis } = await import('ioredis');
  const single = parsed.nodes.length === 1 ? new Redis({ ...nodeOptions(endpoint, parsed, options), ...parsed.nodes[0]!, db: parsed.db, lazyConnect: true }) : undefined;
  if (single) {
    await connectRedis(single);
    const info = await single.info('cluster').catch(() => '');
    if (!/cluster_enabled:1/.test(info)) return single;
    single.disconnect();
  }
  if (parsed.db !== 0) throw new LanternError('LA_ERR_USAGE', 'a Redis Cluster has only database 0: drop /DB from the --store URL');
  const client = new Cluster(parsed.nodes, {
    lazyConnect: true,
    redisOptions: nodeOptions(endpoint, parsed, { ...options, lazyConnect: undefined }),
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    // A promoted replica takes a few seconds: keep asking the seeds for the new layout meanwhile.
    clusterRetryStrategy: (times) => Math.min(100 * times, 2000),
    ...(parsed.tls ? { dnsLookup: (address, done) => done(null, address) } : {}),
    ...(cluster.shardedSubscribers ? { shardedSubscribers: true } : {}),
  });
  await connectRedis(client as unknown as Redis);
  return client as unknown as RedisConnection;
}

/** Connects a client made with lazyConnect (see openRedis for the errors). */
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
