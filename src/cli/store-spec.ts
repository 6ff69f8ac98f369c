import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option } from 'commander';
import { LanternError } from '../core/errors.js';
import { dataDirPaths } from '../roles/server/data-dir.js';
import { LevelServerStore } from '../storage/level-server-store.js';
import { MemoryNotifier } from '../storage/memory-notifier.js';
import { parseRedisUrl, type RedisEndpoint } from '../storage/redis-client.js';
import { RedisNotifier, redisChannelName } from '../storage/redis-notifier.js';
import { RedisServerStore } from '../storage/redis-server-store.js';
import { deviceChannel, type Notifier, type ServerStore } from '../storage/server-store.js';

/**
 * `--store`: `level` (the embedded LevelDB in the data dir) or
 * `redis[s]://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/DB]` (several nodes: a Redis Cluster's seeds).
 */
export type StoreSpec = { kind: 'level' } | ({ kind: 'redis' } & RedisEndpoint);

export function parseStoreSpec(value: string): StoreSpec {
  if (value === 'level') return { kind: 'level' };
  if (parseRedisUrl(value)) return { kind: 'redis', url: value };
  throw new InvalidArgumentError('expected level or redis[s]://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/DB]');
}

/** `--store`; it may come from LANTERN_STORE instead, which keeps a Redis password out of the process list. */
export function storeOption(): Option {
  return new Option('--store <store>', 'level (the embedded LevelDB in the data dir) or redis[s]://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT…][/DB] (shared by several server processes; several nodes, or one node of a cluster: Redis Cluster)')
    .env('LANTERN_STORE')
    .argParser(parseStoreSpec)
    .default({ kind: 'level' }, 'level');
}

/** `--store-ca`: see resolveStoreSpec. */
export function storeCaOption(): Option {
  return new Option('--store-ca <file>', "PEM CA certificate the rediss:// server's certificate must chain to (default: the system CAs)");
}

/** The store spec with the CA file of `--store-ca` read in. */
export async function resolveStoreSpec(flags: { store: StoreSpec; storeCa?: string }): Promise<StoreSpec> {
  if (flags.storeCa === undefined) return flags.store;
  if (flags.store.kind !== 'redis' || !flags.store.url.startsWith('rediss://')) throw new LanternError('LA_ERR_USAGE', '--store-ca goes with a rediss:// store');
  try {
    return { ...flags.store, ca: await readFile(flags.storeCa, 'utf8') };
  } catch (err) {
    throw new LanternError('LA_ERR_TLS_CONFIG', `Cannot read --store-ca: ${(err as Error).message}`, { cause: err });
  }
}

/** Opens the store (and the notifier that goes with it: in-process for LevelDB, pub/sub for Redis). */
export async function openServerStore(spec: StoreSpec, dataDir: string, options: { fsync?: boolean; waitReplicas?: number } = {}): Promise<{ store: ServerStore; notifier: Notifier & { open?(): Promise<void> } }> {
  if (spec.kind === 'level') {
    const store = new LevelServerStore({ location: dataDirPaths(dataDir).store, sync: options.fsync ?? true });
    await store.open();
    return { store, notifier: new MemoryNotifier() };
  }
  // The store wakes polls in its send script, on the channels the notifier listens to.
  const endpoint = { url: spec.url, ...(spec.ca !== undefined ? { ca: spec.ca } : {}) };
  const store = new RedisServerStore({ ...endpoint, wakeChannels: (a) => redisChannelName(deviceChannel(a)), ...(options.waitReplicas ? { waitReplicas: options.waitReplicas } : {}) });
  await store.open();
  const notifier = new RedisNotifier(endpoint);
  try {
    await notifier.open();
  } catch (err) {
    await store.close();
    throw err;
  }
  return { store, notifier };
}
