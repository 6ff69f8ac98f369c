import type { ExecutionContext, TestFn } from 'ava';
import type { ServerStore } from '../../storage/server-store.js';
import { accountsCompliance } from './server-store/accounts.js';
import { faultsCompliance } from './server-store/faults.js';
import type { ServerStoreFactory } from './server-store/helpers.js';
import { keysCompliance } from './server-store/keys.js';
import { limitsCompliance } from './server-store/limits.js';
import { mailboxCompliance } from './server-store/mailbox.js';
import { peersCompliance } from './server-store/peers.js';
import { sessionsCompliance } from './server-store/sessions.js';

export type { ServerStoreFactory } from './server-store/helpers.js';

/**
 * The behaviour every ServerStore backend must show, one suite per concern of the interface
 * (server-store/*.ts). Each backend's test file runs this.
 */
export function serverStoreComplianceTests(test: TestFn, name: string, factory: ServerStoreFactory): void {
  const withStore = (title: string, fn: (t: ExecutionContext, s: ServerStore) => Promise<void>) =>
    test(`${name}: ${title}`, async (t) => {
      const store = await factory.setup();
      try {
        await fn(t, store);
      } finally {
        await factory.teardown(store);
      }
    });
  for (const concern of [accountsCompliance, sessionsCompliance, keysCompliance, peersCompliance, limitsCompliance, mailboxCompliance]) concern(withStore);
  faultsCompliance(test, name, factory);
}
