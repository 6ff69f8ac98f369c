import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LanternError } from '../../core/errors.js';
import { generateTicketKey, TicketIssuer } from '../../crypto/tickets.js';
import { CertificateAuthority, type CaMaterial } from '../../crypto/x509/certificate-authority.js';
import { makePrivate } from '../../storage/private-dir.js';

/**
 * The server's data directory:
 *   store/          LevelDB (ServerStore)
 *   ca.pem          CA certificate (made on first start, reused after)
 *   ca-key.pem      CA private key (mode 0600)
 *   tls-cert.pem    self-signed TLS certificate and key, with --tls-self-signed
 *   control.sock    control socket of the running server
 *   ticket-key.pem  Ed25519 key that signs proxy tickets (mode 0600)
 */
export const dataDirPaths = (dir: string) => ({
  store: join(dir, 'store'),
  caCert: join(dir, 'ca.pem'),
  caKey: join(dir, 'ca-key.pem'),
  tlsCert: join(dir, 'tls-cert.pem'),
  tlsKey: join(dir, 'tls-key.pem'),
  control: join(dir, 'control.sock'),
  ticketKey: join(dir, 'ticket-key.pem'),
  canarySecret: join(dir, 'canary-secret'),
  addressKey: join(dir, 'address-key'),
});

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Creates the data dir, or makes an existing one and everything in it private (0700/0600);
 * returns what had to be tightened (see makePrivate).
 */
export function ensureDataDir(dir: string): Promise<Array<{ path: string; was: number }>> {
  return makePrivate(dir);
}

/** Loads the CA of this data dir, creating it on first start. */
export async function loadOrCreateCa(dir: string): Promise<CertificateAuthority> {
  const p = dataDirPaths(dir);
  const [cert, key] = await Promise.all([readIfExists(p.caCert), readIfExists(p.caKey)]);
  if (cert && key) return new CertificateAuthority({ certificatePem: cert, privateKeyPem: key });
  if (cert || key) throw new LanternError('LA_ERR_STORE_CORRUPT', `Only one of ca.pem and ca-key.pem exists in ${dir}`);
  const material: CaMaterial = await CertificateAuthority.create();
  await writeFile(p.caKey, material.privateKeyPem, { mode: 0o600, flag: 'wx' });
  await writeFile(p.caCert, material.certificatePem, { mode: 0o600, flag: 'wx' });
  return new CertificateAuthority(material);
}

/** A TLS certificate signed by the server CA for `hosts`, kept in the data dir and reused. */
export async function loadOrCreateSelfSignedTls(
  dir: string,
  ca: CertificateAuthority,
  hosts: string[],
): Promise<{ certificatePem: string; privateKeyPem: string }> {
  const p = dataDirPaths(dir);
  const [cert, key] = await Promise.all([readIfExists(p.tlsCert), readIfExists(p.tlsKey)]);
  if (cert && key) return { certificatePem: cert, privateKeyPem: key };
  const made = await ca.issueTls(hosts);
  await writeFile(p.tlsKey, made.privateKeyPem, { mode: 0o600 });
  await writeFile(p.tlsCert, made.certificatePem, { mode: 0o644 });
  return made;
}

/** The proxy-ticket signing key of this data dir, made on first start. */
export async function loadOrCreateTicketIssuer(dir: string): Promise<TicketIssuer> {
  const path = dataDirPaths(dir).ticketKey;
  let pem = await readIfExists(path);
  if (!pem) {
    pem = generateTicketKey().privateKeyPem;
    await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
  }
  return new TicketIssuer(pem);
}

/** The secret canary content is derived from, made on first start (mode 0600). */
/** The key of the hash that names client networks in limit keys (shared by instances, like the ticket key). */
export function loadOrCreateAddressKey(dir: string): Promise<Buffer> {
  return loadOrCreateSecret(dataDirPaths(dir).addressKey);
}

export function loadOrCreateCanarySecret(dir: string): Promise<Buffer> {
  return loadOrCreateSecret(dataDirPaths(dir).canarySecret);
}

/** 32 random bytes kept in a file (hex, mode 0600), made on first use. */
async function loadOrCreateSecret(path: string): Promise<Buffer> {
  const hex = await readIfExists(path);
  if (hex) return Buffer.from(hex.trim(), 'hex');
  const secret = randomBytes(32);
  await writeFile(path, secret.toString('hex'), { mode: 0o600, flag: 'wx' });
  return secret;
}
