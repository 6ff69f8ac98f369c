import test from 'ava';
import { serverStoreComplianceTests } from '../testing/compliance/server-store.js';
import { MemoryServerStore } from './memory-server-store.js';

serverStoreComplianceTests(test, 'MemoryServerStore', {
  async setup() {
    const store = new MemoryServerStore();
    await store.open();
    return store;
  },
  teardown: (store) => store.close(),
});

test('a closed memory store refuses calls with a store error', async (t) => {
  const store = new MemoryServerStore();
  await t.throwsAsync(store.getAccount('x'), { code: 'LA_ERR_STORE_UNAVAILABLE' } as never);
});
