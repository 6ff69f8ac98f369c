import type { Role } from '../protocol/messages.js';
import type { Keystore } from './keystore.js';

/** What `login` leaves in the agent's keystore. The private key never leaves this device. */
export interface StoredCredential {
  server: string;
  user: string;
  userId: string;
  deviceId: number;
  role: Role;
  certificatePem: string;
  serial: string;
  privateKeyPem: string;
  /** The server CA (from the login answer). */
  caCertificatePem: string;
  /** CA to trust for the server's TLS, when it was given at login (--ca). */
  tlsCaPem?: string;
  /** Domain fronting (login --front): dial and send TLS SNI for this HOST[:PORT]; Host names `server`. */
  front?: string;
  expiresAt: number;
}

const KEY = 'credential';

export async function loadCredential(keystore: Keystore): Promise<StoredCredential | undefined> {
  return keystore.get<StoredCredential>(KEY);
}

export async function saveCredential(keystore: Keystore, credential: StoredCredential): Promise<void> {
  await keystore.batch([
    { type: 'put', key: KEY, value: credential },
    { type: 'del', key: 'session' },
  ]);
}

/** An LA1S session kept between runs, bound to the credential that opened it. */
export interface StoredSession {
  serial: string;
  id: string;
  key: string;
  expiresAt: number;
}

const SESSION_KEY = 'session';

export async function loadSession(keystore: Keystore, credential: StoredCredential): Promise<Omit<StoredSession, 'serial'> | undefined> {
  const s = await keystore.get<StoredSession>(SESSION_KEY);
  if (!s || s.serial !== credential.serial) return undefined;
  return { id: s.id, key: s.key, expiresAt: s.expiresAt };
}

export async function saveSession(keystore: Keystore, credential: StoredCredential, session: Omit<StoredSession, 'serial'>): Promise<void> {
  await keystore.put(SESSION_KEY, { serial: credential.serial, ...session });
}
