import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { ContactIdentities } from '../../crypto/signal/contact-identities.js';
import { UserId } from '../../protocol/messages.js';
import { requireCredential, withKeystore } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

function parseUser(value: string): string {
  if (!UserId.safeParse(value).success) throw new LanternError('LA_ERR_USAGE', 'USERID must be a user id (UUID)');
  return value;
}

export function trustCommand(io: Io, done: (code: number) => void): Command {
  return new Command('trust')
    .description("Accept a contact's changed identity keys (after comparing safety numbers)")
    .argument('<userId>', 'the contact')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (userId: string, flags: { home?: string; json?: boolean }) => {
      const user = parseUser(userId);
      const accepted = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        await requireCredential(keystore);
        return new ContactIdentities(keystore).trust(user);
      });
      if (flags.json) writeJson(io.stdout, { userId: user, acceptedDevices: accepted });
      else writeLine(io.stdout, accepted.length ? `trusted the new identity of device(s) ${accepted.join(', ')}` : 'no changed identity to trust');
      done(0);
    });
}

export function safetyNumberCommand(io: Io, done: (code: number) => void): Command {
  return new Command('safety-number')
    .description("Print the safety number of this device with each of a contact's devices, to compare out of band")
    .argument('<userId>', 'the contact')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (userId: string, flags: { home?: string; json?: boolean }) => {
      const user = parseUser(userId);
      const numbers = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
        return new ContactIdentities(keystore).safetyNumbers({ userId: credential.userId, deviceId: credential.deviceId }, user);
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
