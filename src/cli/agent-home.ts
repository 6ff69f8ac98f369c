import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { LanternError } from '../core/errors.js';
import { RequestSigner } from '../crypto/request-signature.js';
import { DeviceKeys } from '../crypto/signal/device-keys.js';
import { SignalCipher } from '../crypto/signal/signal-cipher.js';
import { signalStores } from '../crypto/signal/stores.js';
import { ApiClient } from '../net/api-client.js';
import { retry, type BackoffPolicy } from '../net/retry.js';
import { loadCredential, loadSession, saveSession, type StoredCredential } from '../storage/credential-store.js';
import type { Keystore } from '../storage/keystore.js';
import { ensureDirectory, makePrivate, tightenedText } from '../storage/private-dir.js';
import { LevelKeystore } from '../storage/level-keystore.js';

/** Homes this process has made private (withKeystore). */
const privateHomes = new Set<string>();

/** Another command holds the keystore: try again every 50–150 ms, for some 10 s. */
const LOCK_WAIT: BackoffPolicy = { initialMs: 100, maxMs: 100, factor: 1, jitter: 0.5 };

/**
 * Opens the LevelDB keystore of an agent home, runs `fn`, closes it. Long-running roles open it
 * only briefly, so when another command holds it, opening is retried for a few seconds instead of
 * failing on the lock.
 */
export async function withKeystore<T>(home: string, fn: (keystore: Keystore) => Promise<T>, o: { create?: boolean } = {}): Promise<T> {
  // Only `login` makes a home; any other command on a home that is not there says so and leaves
  // nothing behind. A home this call made is removed again if `fn` fails.
  let created: string | undefined;
  if (!privateHomes.has(home)) {
    const exists = await stat(home).then((s) => s.isDirectory(), () => false);
    if (!exists && !o.create) throw new LanternError('LA_ERR_NOT_LOGGED_IN', `No agent home at ${home}: run \`lantern-agent login --home ${home}\` first (or set --home / $LANTERN_HOME)`);
    if (!exists) created = (await ensureDirectory(home)).created;
    // The home holds the device's private key and Signal state: private, and made so if it was not.
    // Once per process: what this process creates afterwards is private already (umask 077), and get
    // opens the keystore every few seconds.
    for (const t of await makePrivate(home)) process.stderr.write(`warning: ${tightenedText(t)}\n`);
    privateHomes.add(home);
  }
  try {
    const keystore = await retry(
      async () => {
        const k = new LevelKeystore(join(home, 'keystore'));
        await k.open();
        return k;
      },
      { clock: systemClock, attempts: 100, policy: LOCK_WAIT, retryable: (err) => LanternError.is(err, 'LA_ERR_STORE_LOCKED') },
    );
    try {
      return await fn(keystore);
    } finally {
      await keystore.close();
    }
  } catch (err) {
    if (created) {
      privateHomes.delete(home);
      await rm(created, { recursive: true, force: true });
    }
    throw err;
  }
}

export async function requireCredential(keystore: Keystore): Promise<StoredCredential> {
  const credential = await loadCredential(keystore);
  if (!credential) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
  return credential;
}

/**
 * An API client authenticated with this home's credential. With a keystore, the LA1S session is
 * kept there between runs, so a command does not open a new session each time.
 */
export async function signedClient(credential: StoredCredential, keystore?: Keystore): Promise<ApiClient> {
  const signer = new RequestSigner({
    userId: credential.userId,
    deviceId: credential.deviceId,
    serial: credential.serial,
    privateKeyPem: credential.privateKeyPem,
  });
  const session = keystore ? await loadSession(keystore, credential) : undefined;
  return new ApiClient(
    {
      clock: systemClock,
      auth: signer,
      ...(session ? { session } : {}),
      ...(keystore ? { onSession: (s) => saveSession(keystore, credential, s) } : {}),
    },
    { server: credential.server, ...(credential.tlsCaPem ? { ca: credential.tlsCaPem } : {}), ...(credential.front ? { front: credential.front } : {}) },
  );
}

/** The signed client plus the Signal machinery of this home (keystore must stay open while used). */
export async function openAgent(keystore: Keystore, credential: StoredCredential) {
  const api = await signedClient(credential, keystore);
  const deviceKeys = new DeviceKeys(keystore);
  const hasIdentity = (await deviceKeys.identity()) !== undefined;
  const cipher = hasIdentity
    ? new SignalCipher({ stores: signalStores(keystore) }, { userId: credential.userId, deviceId: credential.deviceId })
    : undefined;
  return { api, deviceKeys, cipher };
}

/**
 * Runs `fn` with an API client for this home's credential, without holding the keystore (the
 * credential is read once; the session lives in memory), and closes the client after.
 */
export async function withApi<T>(home: string, fn: (api: ApiClient, credential: StoredCredential) => Promise<T>): Promise<T> {
  const credential = await withKeystore(home, requireCredential);
  const api = await signedClient(credential);
  try {
    return await fn(api, credential);
  } finally {
    await api.close();
  }
}
