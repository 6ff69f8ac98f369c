import { KEMPublicKey, PublicKey } from '@signalapp/libsignal-client';
import { LanternError } from '../../core/errors.js';
import type { KeysUpload } from '../../protocol/messages.js';
import { fromBase64, toBase64 } from './encoding.js';


function ecKey(b64: string, what: string): PublicKey {
  try {
    return PublicKey.deserialize(fromBase64(b64));
  } catch (err) {
    throw new LanternError('LA_ERR_INVALID_KEY', `${what} is not a valid EC public key`, { cause: err });
  }
}

function kyberKey(b64: string, what: string): void {
  try {
    KEMPublicKey.deserialize(fromBase64(b64));
  } catch (err) {
    throw new LanternError('LA_ERR_INVALID_KEY', `${what} is not a valid Kyber public key`, { cause: err });
  }
}

/**
 * Checks an upload the way Signal-Server does: every key deserializes, and the signed EC prekey,
 * the last-resort Kyber prekey and each one-time Kyber prekey carry a signature by the identity key
 * over their serialized public key. LA_ERR_INVALID_KEY or LA_ERR_BAD_KEY_SIGNATURE (422) otherwise.
 */
export function checkKeysUpload(upload: KeysUpload): void {
  const identity = ecKey(upload.identityKey, 'identityKey');
  const verify = (publicKey: string, signature: string, what: string) => {
    if (!identity.verify(fromBase64(publicKey), fromBase64(signature))) {
      throw new LanternError('LA_ERR_BAD_KEY_SIGNATURE', `The signature of ${what} does not verify against the identity key`);
    }
  };
  ecKey(upload.signedPreKey.publicKey, 'signedPreKey');
  verify(upload.signedPreKey.publicKey, upload.signedPreKey.signature, 'signedPreKey');
  kyberKey(upload.kyberLastResort.publicKey, 'kyberLastResort');
  verify(upload.kyberLastResort.publicKey, upload.kyberLastResort.signature, 'kyberLastResort');
  for (const [i, k] of (upload.kyberPreKeys ?? []).entries()) {
    kyberKey(k.publicKey, `kyberPreKeys[${i}]`);
    verify(k.publicKey, k.signature, `kyberPreKeys[${i}]`);
  }
  for (const [i, k] of (upload.preKeys ?? []).entries()) ecKey(k.publicKey, `preKeys[${i}]`);
}
