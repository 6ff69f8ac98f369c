import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createCsr, describeCertificate, generateDeviceKey } from '../../crypto/x509/device-key.js';
import { ApiClient } from '../../net/api-client.js';
import { loadCredential, saveCredential, type StoredCredential } from '../../storage/credential-store.js';
import type { Keystore } from '../../storage/keystore.js';
import { DeviceKeys } from '../../crypto/signal/device-keys.js';
import { signedClient, withKeystore } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { obtainPassword, writeJson, writeLine, type Io } from '../io.js';

interface LoginFlags {
  server: string;
  user: string;
  passwordStdin?: boolean;
  register?: boolean;
  home?: string;
  ca?: string;
  front?: string;
  resetKeys?: boolean;
  json?: boolean;
}

export function loginCommand(io: Io, done: (code: number) => void): Command {
  return new Command('login')
    .description('Log in: make a device key here, send a CSR, store the issued credential in the home')
    .requiredOption('--server <url>', 'server base URL, e.g. https://127.0.0.1:8443')
    .requiredOption('--user <name>', 'account name')
    .option('--password-stdin', 'read the password from stdin (scripts); without it, it is asked for on the terminal')
    .option('--register', 'create the account first (server must run with --open-registration)')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--ca <file>', "CA certificate (PEM) to trust for the server's TLS, e.g. DATA_DIR/ca.pem")
    .option('--front <host[:port]>', 'domain fronting: dial (and send TLS SNI for) this host, with --server only in the Host header; kept for every command of this home')
    .option('--reset-keys', 'register again with a new registration id and new prekeys (the identity key stays)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: LoginFlags) => {
      let server: URL;
      try {
        server = new URL(flags.server);
        if (server.protocol !== 'http:' && server.protocol !== 'https:') throw new Error('scheme');
      } catch {
        throw new LanternError('LA_ERR_USAGE', '--server must be an http:// or https:// URL');
      }
      const password = await obtainPassword(io, flags.passwordStdin);
      const tlsCaPem = flags.ca
        ? await readFile(flags.ca, 'utf8').catch((err: unknown) => {
            throw new LanternError('LA_ERR_CONFIG', `Cannot read --ca ${flags.ca}: ${(err as Error).message}`, { cause: err });
          })
        : undefined;
      const home = resolveHome(flags.home, io.env);
      const serverUrl = server.origin;
      const result = await withKeystore(
        home,
        (keystore) =>
          logIn(keystore, { server: serverUrl, user: flags.user, password, register: flags.register === true, resetKeys: flags.resetKeys === true, ...(tlsCaPem ? { tlsCaPem } : {}), ...(flags.front ? { front: flags.front } : {}) }),
        { create: true },
      );
      const summary = {
        userId: result.userId,
        deviceId: result.deviceId,
        role: result.role,
        server: result.server,
        certificateExpires: new Date(result.expiresAt).toISOString(),
      };
      if (flags.json) writeJson(io.stdout, summary);
      else writeLine(io.stdout, `logged in as ${flags.user}: user ${summary.userId}, device ${summary.deviceId}`);
      done(0);
    });
}

/**
 * Logs this home in: a new device key and CSR (renewing this home's device when it is the same
 * server and user, or a new device if that one was revoked), the credential stored, the Signal
 * identity made once per home and fresh one-time keys uploaded.
 */
async function logIn(
  keystore: Keystore,
  o: { server: string; user: string; password: string; register: boolean; resetKeys: boolean; tlsCaPem?: string; front?: string },
): Promise<StoredCredential> {
  const previous = await loadCredential(keystore);
  const renew = previous && previous.server === o.server && previous.user === o.user ? previous.deviceId : undefined;
  const key = await generateDeviceKey();
  const api = new ApiClient({ clock: systemClock }, { server: o.server, ...(o.tlsCaPem ? { ca: o.tlsCaPem } : {}), ...(o.front ? { front: o.front } : {}) });
  try {
    const body = { user: o.user, password: o.password, csr: createCsr(key), ...(o.register ? { register: true } : {}) };
    let answer;
    try {
      answer = await api.login({ ...body, ...(renew !== undefined ? { deviceId: renew } : {}) });
    } catch (err) {
      // The device this home had was revoked or removed: become a new device.
      if (renew === undefined || !LanternError.is(err, 'LA_ERR_DEVICE_NOT_FOUND')) throw err;
      answer = await api.login(body);
    }
    const credential = {
      server: o.server,
      user: o.user,
      userId: answer.userId,
      deviceId: answer.deviceId,
      role: answer.role,
      certificatePem: answer.certificate,
      serial: describeCertificate(answer.certificate).serial,
      privateKeyPem: key.privateKeyPem,
      caCertificatePem: answer.caCertificate,
      ...(o.tlsCaPem ? { tlsCaPem: o.tlsCaPem } : {}),
      ...(o.front ? { front: o.front } : {}),
      expiresAt: answer.expiresAt,
    };
    await saveCredential(keystore, credential);
    // Signal keys: the identity is made once per home; each login uploads fresh one-time keys.
    const deviceKeys = new DeviceKeys(keystore);
    await deviceKeys.ensureIdentity({ resetRegistration: o.resetKeys });
    const signed = await signedClient(credential, keystore);
    try {
      await signed.putKeys(await deviceKeys.upload());
    } finally {
      await signed.close();
    }
    return credential;
  } finally {
    await api.close();
  }
}

export function whoamiCommand(io: Io, done: (code: number) => void): Command {
  return new Command('whoami')
    .description("Show this home's identity: user id, device id, server, certificate expiry")
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--id', 'print only the user id (to share it: others add it with `contacts add ID --name …`)')
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean; id?: boolean }) => {
      const credential = await withKeystore(resolveHome(flags.home, io.env), loadCredential);
      if (!credential) throw new LanternError('LA_ERR_NOT_LOGGED_IN');
      if (flags.id) {
        writeLine(io.stdout, credential.userId);
        return done(0);
      }
      const out = {
        userId: credential.userId,
        deviceId: credential.deviceId,
        server: credential.server,
        certificateExpires: new Date(credential.expiresAt).toISOString(),
      };
      if (flags.json) writeJson(io.stdout, out);
      else writeLine(io.stdout, `user ${out.userId} device ${out.deviceId} on ${out.server} (certificate expires ${out.certificateExpires})`);
      done(0);
    });
}
