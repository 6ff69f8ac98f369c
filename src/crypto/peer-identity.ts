import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';
import forge from 'node-forge';

/**
 * A give peer's identity key: ECDSA P-256, made fresh for each run, registered with the server and
 * sent in ads. It is also the key of the peer's TLS certificate, so the TLS handshake itself proves
 * that whoever answers at a registered address holds the registered key: get clients and verifiers
 * pin it, and a peer answering on another peer's address, or a man in the middle, fails the
 * handshake check. (P-256, the key type of most HTTPS certificates, not Ed25519, which few sites use.)
 *
 * The wire form of the key is its SubjectPublicKeyInfo DER, base64url (122 characters).
 */
export class PeerIdentity {
  readonly #privateKey: KeyObject;
  /** SPKI DER, base64url: what the registration and ads carry. */
  readonly publicKey: string;

  constructor() {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    this.#privateKey = privateKey;
    this.publicKey = publicKey.export({ type: 'spki', format: 'der' }).toString('base64url');
  }

  /** Signs `data` with the identity key (ECDSA P-256 over SHA-256, DER, base64url): ICE answers carry one. */
  sign(data: Buffer): string {
    return sign('sha256', data, this.#privateKey).toString('base64url');
  }

  /** The short form tickets are bound to (see identityFingerprint). */
  get fingerprint(): string {
    return identityFingerprint(this.publicKey);
  }

  /**
   * A self-signed TLS certificate for this key (PEM, with the private key): subject and SAN `name`
   * when the peer has a name (`--sni-name`), else `localhost`; valid from an hour ago for a year.
   */
  tlsCredentials(options: { name?: string; now?: number } = {}): { certificatePem: string; privateKeyPem: string } {
    const now = options.now ?? Date.now();
    const name = options.name ?? 'localhost';
    const asn1 = forge.asn1;
    const seq = (items: forge.asn1.Asn1[]) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, items);
    const oid = (id: string) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(id).getBytes());
    const dn = () =>
      seq([asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SET, true, [seq([oid('2.5.4.3'), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, forge.util.encodeUtf8(name))])])]);
    const ecdsaWithSha256 = seq([oid('1.2.840.10045.4.3.2')]);
    const serial = randomBytes(16);
    serial[0] = (serial[0]! & 0x7f) | 0x01;
    const time = (ms: number) => asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTCTIME, false, asn1.dateToUtcTime(new Date(ms)));
    const spki = asn1.fromDer(forge.util.createBuffer(Buffer.from(this.publicKey, 'base64url').toString('binary')));
    const san = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, name);
    const extensions = asn1.create(asn1.Class.CONTEXT_SPECIFIC, 3, true, [
      seq([
        seq([oid('2.5.29.17'), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, asn1.toDer(seq([san])).getBytes())]),
        seq([oid('2.5.29.19'), asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OCTETSTRING, false, asn1.toDer(seq([])).getBytes())]),
      ]),
    ]);
    const tbs = seq([
      asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, String.fromCharCode(2))]),
      asn1.create(asn1.Class.UNIVERSAL, asn1.Type.INTEGER, false, serial.toString('binary')),
      ecdsaWithSha256,
      dn(),
      seq([time(now - 3600_000), time(now + 365 * 86_400_000)]),
      dn(),
      spki,
      extensions,
    ]);
    const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
    const signature = sign('sha256', tbsDer, this.#privateKey);
    const certificate = seq([tbs, ecdsaWithSha256, asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, `\0${signature.toString('binary')}`)]);
    const der = Buffer.from(asn1.toDer(certificate).getBytes(), 'binary');
    const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
    return { certificatePem: pem, privateKeyPem: this.#privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }
}

/** A key's short form for binding tickets to one peer: SHA-256 of the SPKI DER, first 16 bytes, base64url. */
export function identityFingerprint(publicKey: string): string {
  return createHash('sha256').update(Buffer.from(publicKey, 'base64url')).digest().subarray(0, 16).toString('base64url');
}

/** The identity key (SPKI DER, base64url) a peer's TLS certificate carries. */
export function certificateKey(certificate: X509Certificate): string {
  return certificate.publicKey.export({ type: 'spki', format: 'der' }).toString('base64url');
}

/** Whether a string is a P-256 public key in the wire form (throws nothing). */
export function isIdentityKey(publicKey: string): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(publicKey, 'base64url'), format: 'der', type: 'spki' });
    return key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1' && key.export({ type: 'spki', format: 'der' }).toString('base64url') === publicKey;
  } catch {
    return false;
  }
}

/** Whether `signature` (PeerIdentity.sign) is the identity key `publicKey`'s over `data`. */
export function verifyIdentitySignature(publicKey: string, data: Buffer, signature: string): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(publicKey, 'base64url'), format: 'der', type: 'spki' });
    return verify('sha256', data, key, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
