import { LanternError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { DeviceKeys } from '../crypto/signal/device-keys.js';
import { Contacts } from '../messaging/contacts.js';
import { Inbox, type ReceivedMessage } from '../messaging/inbox.js';
import { Messenger } from '../messaging/messenger.js';
import type { IceSignaling } from '../net/ice/ice-tunnels.js';
import type { PollResponse } from '../protocol/messages.js';
import type { StoredCredential } from '../storage/credential-store.js';
import { openAgent, withKeystore } from './agent-home.js';

// Messaging for the long-running roles (get, give, verify): the home's keystore is opened for each
// use only, so that other commands on the home keep working meanwhile.

/** Whether this home has a Signal identity (it can send and receive end-to-end encrypted messages). */
export function hasSignalIdentity(home: string): Promise<boolean> {
  return withKeystore(home, async (keystore) => (await new DeviceKeys(keystore).identity()) !== undefined);
}

/** Runs `use` with an inbox on the home's keystore (and its contacts). */
export function withInbox<T>(home: string, credential: StoredCredential, logger: Logger, use: (inbox: Inbox, contacts: Contacts) => Promise<T>): Promise<T> {
  return withKeystore(home, async (keystore) => {
    const agent = await openAgent(keystore, credential);
    const contacts = new Contacts(keystore);
    try {
      return await use(new Inbox({ api: agent.api, keystore, logger, deviceKeys: agent.deviceKeys, contacts, ...(agent.cipher ? { cipher: agent.cipher } : {}) }), contacts);
    } finally {
      await agent.api.close();
    }
  });
}

/** Decrypts and stores a polled batch; the messages new to this device. */
export function receiveBatch(home: string, credential: StoredCredential, logger: Logger): (batch: PollResponse) => Promise<ReceivedMessage[]> {
  return (batch) => withInbox(home, credential, logger, async (inbox) => (await inbox.handle(batch)).messages);
}

/** ICE signaling sent as end-to-end encrypted messages from this home (to every device of the user; only the one in the session acts on it). */
export function iceSignaling(home: string, credential: StoredCredential, logger: Logger): IceSignaling {
  return {
    send: (to, signal) =>
      withKeystore(home, async (keystore) => {
        const { api, cipher } = await openAgent(keystore, credential);
        try {
          if (!cipher) throw new LanternError('LA_ERR_NOT_LOGGED_IN', 'This home has no Signal identity; run `lantern-agent login` again');
          const messenger = new Messenger({ api, keystore, cipher, logger }, { userId: credential.userId, deviceId: credential.deviceId });
          await messenger.sendEnvelope(to.userId, { v: 1, ice: signal }, { copyToOwnDevices: false });
        } finally {
          await api.close();
        }
      }),
  };
}
