import { join } from 'node:path';
import { signedClient, withKeystore } from '../../cli/agent-home.js';
import { RequestSigner } from '../../crypto/request-signature.js';
import type { ApiClient } from '../../net/api-client.js';
import { loadCredential, type StoredCredential } from '../../storage/credential-store.js';
import { makePrivate } from '../../storage/private-dir.js';
import { runCli, runCliInProcess, type RunningServer } from './cli.js';

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

/**
 * `account add` (unless `existing`) and `login` through the built CLI, run in this process (see
 * runCliInProcess; with a `launcher`, the login is a process of its own); the home is
 * DIR/home-NAME[-suffix], left as the binary leaves it (private: see below).
 */
export async function addAgent(
  server: RunningServer,
  dir: string,
  name: string,
  /** `launcher`: runs the login in a network namespace (`['ip', 'netns', 'exec', NS]`). */
  options: { existing?: boolean; homeSuffix?: string; password?: string; role?: 'user' | 'verifier'; launcher?: string[] } = {},
): Promise<TestAgent> {
  const password = options.password ?? `pw-${name}-secret`;
  if (!options.existing) {
    const added = await runCliInProcess(['account', 'add', name, '--data-dir', server.dataDir, ...(options.role ? ['--role', options.role] : []), '--password-stdin'], { stdin: `${password}\n` });
    if (added.code !== 0) throw new Error(`account add failed: ${added.stderr}`);
  }
  const home = join(dir, `home-${name}${options.homeSuffix ?? ''}`);
  const ca = server.url.startsWith('https:') ? ['--ca', join(server.dataDir, 'ca.pem')] : [];
  const loginArgs = ['login', '--server', server.url, '--user', name, '--password-stdin', '--home', home, ...ca];
  const login = options.launcher ? await runCli(loginArgs, { stdin: `${password}\n`, launcher: options.launcher }) : await runCliInProcess(loginArgs, { stdin: `${password}\n` });
  if (login.code !== 0) throw new Error(`login failed: ${login.stderr}`);
  // The binary runs with umask 077, so LevelDB's files in the home are private; this process's
  // umask is the test runner's. Tightened here as the next command would (with a warning) do.
  if (!options.launcher) await makePrivate(home);
  const credential = await readHomeCredential(home);
  const { userId, deviceId, serial, privateKeyPem } = credential;
  const signer = new RequestSigner({ userId, deviceId, serial, privateKeyPem });
  return { name, home, userId, deviceId, credential, signer, api: () => signedClient(credential) };
}
