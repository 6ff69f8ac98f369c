import test from 'ava';
import { Level } from 'level';
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

test('LevelKeystore reads what it wrote as JSON before bytes were kept as bytes', async (t) => {
  const dir = await tempDir();
  try {
    const old = new Level<string, unknown>(dir.path, { valueEncoding: 'json' });
    await old.put('a', { x: 1 });
    await old.put('s', 'AAEC');
    await old.close();
    const k = new LevelKeystore(dir.path);
    await k.open();
    t.deepEqual(await k.get('a'), { x: 1 });
    t.is(await k.get('s'), 'AAEC');
    await k.close();
  } finally {
    await dir.remove();
  }
});
