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
  expiresAt: number;
}

const KEY = 'credential';

export async function loadCredential(keystore: Keystore): Promise<StoredCredential | undefined> {
  return keystore.get<StoredCredential>(KEY);
}

export async function saveCredential(keystore: Keystore, credential: StoredCredential): Promise<void> {
  await keystore.put(KEY, credential);
}
