import { generateKeyPair as generateKeyPairCb } from 'node:crypto';
import forge from 'node-forge';
import { LanternError } from '../../core/errors.js';

export interface DeviceKey {
  privateKeyPem: string;
  publicKeyPem: string;
}

/** A new RSA-2048 key pair, made with Node's native crypto (forge's pure-JS keygen is slow). */
export function generateDeviceKey(): Promise<DeviceKey> {
  return new Promise((resolve, reject) =>
    generateKeyPairCb(
      'rsa',
      {
        modulusLength: 2048,
        publicKeyEncoding: { type: 'spki', format: 'pem' },
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      },
      (err, publicKeyPem, privateKeyPem) => (err ? reject(err) : resolve({ publicKeyPem, privateKeyPem })),
    ),
  );
}

/** A PKCS#10 request for the key; the subject is a placeholder, the server chooses the real one. */
export function createCsr(key: DeviceKey): string {
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(key.publicKeyPem);
  csr.setSubject([{ name: 'commonName', value: 'lantern-agent device' }]);
  csr.sign(forge.pki.privateKeyFromPem(key.privateKeyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  return forge.pki.certificationRequestToPem(csr);
}

/** Reads notAfter (ms) and the serial of a PEM certificate. */
export function describeCertificate(pem: string): { expiresAt: number; serial: string; subject: string } {
  try {
    const cert = forge.pki.certificateFromPem(pem);
    const cn = cert.subject.getField('CN') as { value?: string } | null;
    return { expiresAt: cert.validity.notAfter.getTime(), serial: cert.serialNumber, subject: cn?.value ?? '' };
  } catch (err) {
    throw new LanternError('LA_ERR_TLS_CONFIG', 'Certificate cannot be read', { cause: err });
  }
}
