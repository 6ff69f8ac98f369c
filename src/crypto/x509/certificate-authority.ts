import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import forge from 'node-forge';
import { LanternError } from '../../core/errors.js';
import { generateDeviceKey } from './device-key.js';

export interface CaMaterial {
  certificatePem: string;
  privateKeyPem: string;
}

export interface IssuedCredential {
  certificatePem: string;
  serial: string;
  publicKeyPem: string;
  expiresAt: number;
}

/** Positive random 128-bit serial, lower-case hex (as forge writes it). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  if (bytes[0] === 0) bytes[0] = 1;
  return bytes.toString('hex');
}

/** The server's CA (node-forge): signs device credentials from CSRs and, on request, a TLS certificate. */
export class CertificateAuthority {
  readonly certificatePem: string;
  readonly #cert: forge.pki.Certificate;
  readonly #key: forge.pki.rsa.PrivateKey;

  constructor(material: CaMaterial) {
    try {
      this.#cert = forge.pki.certificateFromPem(material.certificatePem);
      this.#key = forge.pki.privateKeyFromPem(material.privateKeyPem) as forge.pki.rsa.PrivateKey;
    } catch (err) {
      throw new LanternError('LA_ERR_STORE_CORRUPT', 'CA certificate or key cannot be read', { cause: err });
    }
    this.certificatePem = material.certificatePem;
  }

  /** A new self-signed CA, valid for ten years. */
  static async create(commonName = 'lantern-agent server CA', now = Date.now()): Promise<CaMaterial> {
    const key = await generateDeviceKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
    cert.serialNumber = randomSerial();
    cert.validity.notBefore = new Date(now - 60_000);
    cert.validity.notAfter = new Date(now + 10 * 365 * 24 * 3600_000);
    const attrs = [{ name: 'commonName', value: commonName }];
    cert.setSubject(attrs);
    cert.setIssuer(attrs);
    cert.setExtensions([
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
      { name: 'subjectKeyIdentifier' },
    ]);
    cert.sign(forge.pki.privateKeyFromPem(key.privateKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    return { certificatePem: forge.pki.certificateToPem(cert), privateKeyPem: key.privateKeyPem };
  }

  /**
   * Checks a CSR (PEM, self-signature, RSA >= 2048) and returns its public key. LA_ERR_INVALID_CSR
   * otherwise.
   */
  checkCsr(csrPem: string): string {
    let csr: forge.pki.CertificateSigningRequest;
    try {
      csr = forge.pki.certificationRequestFromPem(csrPem);
    } catch (err) {
      throw new LanternError('LA_ERR_INVALID_CSR', 'CSR is not a readable PKCS#10 request', { cause: err });
    }
    let ok = false;
    try {
      ok = csr.verify();
    } catch {
      ok = false;
    }
    if (!ok || !csr.publicKey) throw new LanternError('LA_ERR_INVALID_CSR', 'CSR signature does not verify');
    const rsa = csr.publicKey as forge.pki.rsa.PublicKey;
    if (!rsa.n || rsa.n.bitLength() < 2048) throw new LanternError('LA_ERR_INVALID_CSR', 'CSR key must be RSA of 2048 bits or more');
    return forge.pki.publicKeyToPem(csr.publicKey);
  }

  /** Issues the device certificate: subject CN = userId, SAN URI urn:lantern:device:<userId>:<deviceId>. */
  issueDevice(p: { publicKeyPem: string; serial: string; userId: string; deviceId: number; now: number; expiresAt: number }): string {
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(p.publicKeyPem);
    cert.serialNumber = p.serial;
    cert.validity.notBefore = new Date(p.now - 60_000);
    cert.validity.notAfter = new Date(p.expiresAt);
    cert.setSubject([{ name: 'commonName', value: p.userId }]);
    cert.setIssuer(this.#cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', clientAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 6, value: `urn:lantern:device:${p.userId}:${p.deviceId}` }] },
    ]);
    cert.sign(this.#key, forge.md.sha256.create());
    return forge.pki.certificateToPem(cert);
  }

  /** A TLS server certificate for the given host names and addresses, signed by this CA. */
  async issueTls(hosts: string[], now = Date.now()): Promise<{ certificatePem: string; privateKeyPem: string }> {
    const key = await generateDeviceKey();
    const cert = forge.pki.createCertificate();
    cert.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
    cert.serialNumber = randomSerial();
    cert.validity.notBefore = new Date(now - 60_000);
    cert.validity.notAfter = new Date(now + 825 * 24 * 3600_000);
    cert.setSubject([{ name: 'commonName', value: hosts[0] ?? 'localhost' }]);
    cert.setIssuer(this.#cert.subject.attributes);
    cert.setExtensions([
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...new Set(hosts)].map((h) => (isIP(h) ? { type: 7, ip: h } : { type: 2, value: h })),
      },
    ]);
    cert.sign(this.#key, forge.md.sha256.create());
    return { certificatePem: forge.pki.certificateToPem(cert), privateKeyPem: key.privateKeyPem };
  }
}
