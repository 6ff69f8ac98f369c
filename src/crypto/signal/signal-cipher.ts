import {
  CiphertextMessageType,
  ErrorCode,
  KEMPublicKey,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeySignalMessage,
  ProtocolAddress,
  PublicKey,
  SignalMessage,
  processPreKeyBundle,
  signalDecrypt,
  signalDecryptPreKey,
  signalEncrypt,
} from '@signalapp/libsignal-client';
import { LanternError } from '../../core/errors.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import type { Address, DeviceBundle } from '../../protocol/messages.js';
import type { SignalStores } from './stores.js';
import { fromBase64, toBase64 } from './encoding.js';

const addr = (a: Address) => ProtocolAddress.new(a.userId, a.deviceId);

/** Wire type codes of ciphertexts (libsignal's), next to 0 for plaintext. */
export const MESSAGE_TYPE = { plaintext: 0, whisper: CiphertextMessageType.Whisper, preKey: CiphertextMessageType.PreKey } as const;

function wrap(err: unknown, remote: Address, what: string): LanternError {
  if (err instanceof LanternError) return err;
  if (err instanceof LibSignalErrorBase && err.is(ErrorCode.UntrustedIdentity)) {
    return new LanternError('LA_ERR_IDENTITY_CHANGED', `The identity key of ${remote.userId}:${remote.deviceId} changed; check the safety number, then run \`lantern-agent trust ${remote.userId}\``, { cause: err, details: { userId: remote.userId, deviceId: remote.deviceId } });
  }
  if (err instanceof LibSignalErrorBase && err.is(ErrorCode.DuplicatedMessage)) {
    return new LanternError('LA_ERR_DUPLICATE_MESSAGE', undefined, { cause: err });
  }
  return new LanternError('LA_ERR_DECRYPT_FAILED', `${what} failed for ${remote.userId}:${remote.deviceId}: ${(err as Error).message}`, { cause: err });
}

/**
 * Encrypts and decrypts with libsignal for one local device. Every operation on a remote address is
 * serialized (libsignal leaves locking to the caller; interleaved encrypt/decrypt corrupts sessions).
 */
export class SignalCipher {
  readonly #stores: SignalStores;
  readonly #local: ProtocolAddress;
  readonly #locks = new KeyedMutex();

  constructor(components: { stores: SignalStores }, local: Address) {
    this.#stores = components.stores;
    this.#local = addr(local);
  }

  #lock<T>(remote: Address, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(`${remote.userId}.${remote.deviceId}`, fn);
  }

  async hasSession(remote: Address): Promise<boolean> {
    const s = await this.#stores.session.getSession(addr(remote));
    return s !== null && s.hasCurrentState();
  }

  /** Builds a session from a fetched bundle (X3DH + Kyber). */
  processBundle(userId: string, bundle: DeviceBundle): Promise<void> {
    const remote = { userId, deviceId: bundle.deviceId };
    return this.#lock(remote, async () => {
      try {
        const b = PreKeyBundle.new(
          bundle.registrationId,
          bundle.deviceId,
          bundle.preKey?.keyId ?? null,
          bundle.preKey ? PublicKey.deserialize(fromBase64(bundle.preKey.publicKey)) : null,
          bundle.signedPreKey.keyId,
          PublicKey.deserialize(fromBase64(bundle.signedPreKey.publicKey)),
          fromBase64(bundle.signedPreKey.signature),
          PublicKey.deserialize(fromBase64(bundle.identityKey)),
          bundle.kyberPreKey.keyId,
          KEMPublicKey.deserialize(fromBase64(bundle.kyberPreKey.publicKey)),
          fromBase64(bundle.kyberPreKey.signature),
        );
        try {
          await processPreKeyBundle(b, addr(remote), this.#local, this.#stores.session, this.#stores.identity);
        } catch (err) {
          // Remember the new key as pending, so `trust` can accept it after the user compared numbers.
          if (err instanceof LibSignalErrorBase && err.is(ErrorCode.UntrustedIdentity)) {
            await this.#stores.identity.saveIdentity(addr(remote), b.identityKey());
          }
          throw err;
        }
      } catch (err) {
        throw wrap(err, remote, 'Building a session');
      }
    });
  }

  async encrypt(remote: Address, plaintext: Uint8Array): Promise<{ type: number; payload: string; registrationId: number }> {
    return this.#lock(remote, async () => {
      try {
        const address = addr(remote);
        const message = await signalEncrypt(plaintext as Uint8Array<ArrayBuffer>, address, this.#local, this.#stores.session, this.#stores.identity);
        const session = await this.#stores.session.getSession(address);
        const wire = message.serialize();
        return { type: message.type(), payload: toBase64(wire), registrationId: session!.remoteRegistrationId() };
      } catch (err) {
        throw wrap(err, remote, 'Encryption');
      }
    });
  }

  async decrypt(remote: Address, type: number, payload: string): Promise<Uint8Array> {
    return this.#lock(remote, async () => {
      try {
        if (type === MESSAGE_TYPE.preKey) {
          const s = this.#stores;
          return await signalDecryptPreKey(PreKeySignalMessage.deserialize(fromBase64(payload)), addr(remote), this.#local, s.session, s.identity, s.preKey, s.signedPreKey, s.kyberPreKey);
        }
        if (type === MESSAGE_TYPE.whisper) {
          return await signalDecrypt(SignalMessage.deserialize(fromBase64(payload)), addr(remote), this.#local, this.#stores.session, this.#stores.identity);
        }
        throw new LanternError('LA_ERR_DECRYPT_FAILED', `Unknown message type ${type}`);
      } catch (err) {
        throw wrap(err, remote, 'Decryption');
      }
    });
  }

  /**
   * Retires the current session with a device, to be rebuilt from a fresh bundle. The state is
   * archived, not deleted: messages the other side already encrypted with it still decrypt.
   */
  dropSession(remote: Address): Promise<void> {
    return this.#lock(remote, async () => {
      const record = await this.#stores.session.getSession(addr(remote));
      if (!record) return;
      record.archiveCurrentState();
      await this.#stores.session.saveSession(addr(remote), record);
    });
  }
}
