import { join } from 'node:path';
import { signedClient, withKeystore } from '../../cli/agent-home.js';
import { RequestSigner } from '../../crypto/request-signature.js';
import type { ApiClient } from '../../net/api-client.js';
import { loadCredential, type StoredCredential } from '../../storage/credential-store.js';
import { runCli, type RunningServer } from './cli.js';

export interface TestAgent {
  name: string;
  home: string;
  userId: string;
  deviceId: number;
  credential: StoredCredential;
  /** Signs raw requests with this home's device key (for tests that craft requests by hand). */
  signer: RequestSigner;
  /** An API client signing with this home's credential (close it after use). */
  api(): Promise<ApiClient>;
}

export async function readHomeCredential(home: string): Promise<StoredCredential> {
  const credential = await withKeystore(home, loadCredential);
  if (!credential) throw new Error(`no credential in ${home}`);
  return credential;
}

/** `account add` (unless `existing`) and `login` through the real CLI; the home is DIR/home-NAME[-suffix]. */
export async function addAgent(
  server: RunningServer,
  dir: string,
  name: string,
  /** `launcher`: runs the login in a network namespace (`['ip', 'netns', 'exec', NS]`). */
  options: { existing?: boolean; homeSuffix?: string; password?: string; role?: 'user' | 'verifier'; launcher?: string[] } = {},
): Promise<TestAgent> {
  const password = options.password ?? `pw-${name}-secret`;
  if (!options.existing) {
    const added = await runCli(['account', 'add', name, '--data-dir', server.dataDir, ...(options.role ? ['--role', options.role] : []), '--password-stdin'], { stdin: `${password}\n` });
    if (added.code !== 0) throw new Error(`account add failed: ${added.stderr}`);
  }
  const home = join(dir, `home-${name}${options.homeSuffix ?? ''}`);
  const ca = server.url.startsWith('https:') ? ['--ca', join(server.dataDir, 'ca.pem')] : [];
  const login = await runCli(['login', '--server', server.url, '--user', name, '--password-stdin', '--home', home, ...ca], { stdin: `${password}\n`, ...(options.launcher ? { launcher: options.launcher } : {}) });
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  const credential = await readHomeCredential(home);
  const { userId, deviceId, serial, privateKeyPem } = credential;
  const signer = new RequestSigner({ userId, deviceId, serial, privateKeyPem });
  return { name, home, userId, deviceId, credential, signer, api: () => signedClient(credential) };
}
