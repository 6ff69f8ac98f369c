import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { LanternError } from '../core/errors.js';
import { RequestSigner } from '../crypto/request-signature.js';
import { ApiClient } from '../net/api-client.js';
import { loadCredential, type StoredCredential } from '../storage/credential-store.js';
import type { Keystore } from '../storage/keystore.js';
import { LevelKeystore } from '../storage/level-keystore.js';

/** Opens the LevelDB keystore of an agent home, runs `fn`, closes it. */
export async function withKeystore<T>(home: string, fn: (keystore: Keystore) => Promise<T>): Promise<T> {
  await mkdir(home, { recursive: true, mode: 0o700 });
  const keystore = new LevelKeystore(join(home, 'keystore'));
  await keystore.open();
  try {
    return await fn(keystore);
  } finally {
    await keystore.close();
  }
}

export async function requireCredential(keystore: Keystore): Promise<StoredCredential> {
  const credential = await loadCredential(keystore);
  if (!credential) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
  return credential;
}

/** An API client that signs every request with this home's credential. */
export function signedClient(credential: StoredCredential): ApiClient {
  const signer = new RequestSigner({
    userId: credential.userId,
    deviceId: credential.deviceId,
    serial: credential.serial,
    privateKeyPem: credential.privateKeyPem,
  });
  return new ApiClient(
    { clock: systemClock, authorize: (method, path, body, now) => signer.authorize(method, path, body, now) },
    { server: credential.server, ...(credential.tlsCaPem ? { ca: credential.tlsCaPem } : {}) },
  );
}
