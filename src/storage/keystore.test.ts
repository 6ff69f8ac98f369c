import test from 'ava';
import { keystoreComplianceTests } from '../testing/compliance/keystore.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import type { Keystore } from './keystore.js';
import { LevelKeystore } from './level-keystore.js';
import { MemoryKeystore } from './memory-keystore.js';

keystoreComplianceTests(test, 'MemoryKeystore', {
  async setup() {
    const k = new MemoryKeystore();
    await k.open();
    return k;
  },
  teardown: (k) => k.close(),
});

const cleanups = new WeakMap<Keystore, () => Promise<void>>();
keystoreComplianceTests(test, 'LevelKeystore', {
  async setup() {
    const dir = await tempDir();
    const k = new LevelKeystore(dir.path);
    await k.open();
    cleanups.set(k, dir.remove);
    return k;
  },
  async teardown(k) {
    await k.close();
    await cleanups.get(k)?.();
  },
});
