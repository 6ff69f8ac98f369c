import { InvalidArgumentError } from 'commander';
import { dataDirPaths } from '../roles/server/data-dir.js';
import { LevelServerStore } from '../storage/level-server-store.js';
import { MemoryNotifier } from '../storage/memory-notifier.js';
import { RedisNotifier, redisChannelName } from '../storage/redis-notifier.js';
import { RedisServerStore } from '../storage/redis-server-store.js';
import { deviceChannel, type Notifier, type ServerStore } from '../storage/server-store.js';

/** `--store`: `level` (the embedded LevelDB in the data dir) or `redis://HOST:PORT[/DB]`. */
export type StoreSpec = { kind: 'level' } | { kind: 'redis'; url: string };

export function parseStoreSpec(value: string): StoreSpec {
  if (value === 'level') return { kind: 'level' };
  if (/^rediss?:\/\/[^/\s]+(\/\d{1,2})?$/.test(value)) return { kind: 'redis', url: value };
  throw new InvalidArgumentError('expected level or redis://HOST:PORT[/DB]');
}

/** Opens the store (and the notifier that goes with it: in-process for LevelDB, pub/sub for Redis). */
export async function openServerStore(spec: StoreSpec, dataDir: string, options: { fsync?: boolean } = {}): Promise<{ store: ServerStore; notifier: Notifier & { open?(): Promise<void> } }> {
  if (spec.kind === 'level') {
    const store = new LevelServerStore({ location: dataDirPaths(dataDir).store, sync: options.fsync ?? true });
    await store.open();
    return { store, notifier: new MemoryNotifier() };
  }
  // The store wakes polls in its send script, on the channels the notifier listens to.
  const store = new RedisServerStore({ url: spec.url, wakeChannels: (a) => redisChannelName(deviceChannel(a)) });
  await store.open();
  const notifier = new RedisNotifier({ url: spec.url });
  try {
    await notifier.open();
  } catch (err) {
    await store.close();
    throw err;
  }
  return { store, notifier };
}
