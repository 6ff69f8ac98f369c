import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { ContactIdentities } from '../../crypto/signal/contact-identities.js';
import { Contacts } from '../../messaging/contacts.js';
import { requireCredential, withKeystore } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

export function trustCommand(io: Io, done: (code: number) => void): Command {
  return new Command('trust')
    .description("Accept a contact's changed identity keys (after comparing safety numbers)")
    .argument('<contact>', "the contact: a name (contacts add --name) or a user id")
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (userId: string, flags: { home?: string; json?: boolean }) => {
      const { user, accepted } = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        await requireCredential(keystore);
        const user = await new Contacts(keystore).resolve(userId);
        return { user, accepted: await new ContactIdentities(keystore).trust(user) };
      });
      if (flags.json) writeJson(io.stdout, { userId: user, acceptedDevices: accepted });
      else writeLine(io.stdout, accepted.length ? `trusted the new identity of device(s) ${accepted.join(', ')}` : 'no changed identity to trust');
      done(0);
    });
}

export function safetyNumberCommand(io: Io, done: (code: number) => void): Command {
  return new Command('safety-number')
    .description("Print the safety number of this device with each of a contact's devices, to compare out of band")
    .argument('<contact>', "the contact: a name (contacts add --name) or a user id")
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (userId: string, flags: { home?: string; json?: boolean }) => {
      const { user, numbers } = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
        const user = await new Contacts(keystore).resolve(userId);
        return { user, numbers: await new ContactIdentities(keystore).safetyNumbers({ userId: credential.userId, deviceId: credential.deviceId }, user) };
      });
      if (numbers.length === 0) throw new LanternError('LA_ERR_RECIPIENT_NOT_FOUND', 'No session with this contact yet: exchange a message first');
      if (flags.json) writeJson(io.stdout, { userId: user, devices: numbers });
      else {
        for (const n of numbers) {
          writeLine(io.stdout, `device ${n.deviceId}: ${n.safetyNumber.replace(/(\d{5})(?=\d)/g, '$1 ')}${n.changed ? '  (CHANGED, not trusted yet)' : ''}`);
        }
      }
      done(0);
    });
}
