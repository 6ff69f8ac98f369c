import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { Contacts } from '../../messaging/contacts.js';
import { UserId } from '../../protocol/messages.js';
import { requireCredential, withKeystore } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

const home = { flag: '--home <dir>', about: 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)' };

function userId(value: string): string {
  if (!UserId.safeParse(value).success) throw new LanternError('LA_ERR_USAGE', 'USERID must be a user id (UUID)');
  return value;
}

export function contactsCommand(io: Io, done: (code: number) => void): Command {
  const contacts = new Command('contacts').description('Contacts: the users whose give peers this client accepts ads from');
  contacts
    .command('add <userId>')
    .option('--name <name>', 'a name to remember them by')
    .option(home.flag, home.about)
    .option('--json', 'print JSON')
    .action(async (id: string, flags: { name?: string; home?: string; json?: boolean }) => {
      const contact = await withKeystore(resolveHome(flags.home, io.env), async (k) => {
        await requireCredential(k);
        return new Contacts(k).add(userId(id), Date.now(), flags.name);
      });
      if (flags.json) writeJson(io.stdout, contact);
      else writeLine(io.stdout, `contact ${contact.userId} added`);
      done(0);
    });
  contacts
    .command('remove <userId>')
    .option(home.flag, home.about)
    .action(async (id: string, flags: { home?: string }) => {
      const removed = await withKeystore(resolveHome(flags.home, io.env), (k) => new Contacts(k).remove(userId(id)));
      writeLine(io.stdout, removed ? `contact ${id} removed (with its ads)` : `${id} was not a contact`);
      done(0);
    });
  contacts
    .command('list')
    .option(home.flag, home.about)
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      const list = await withKeystore(resolveHome(flags.home, io.env), (k) => new Contacts(k).list());
      if (flags.json) writeJson(io.stdout, list);
      else for (const c of list) writeLine(io.stdout, `${c.userId}${c.name ? ` (${c.name})` : ''}`);
      done(0);
    });
  return contacts;
}

export function adsCommand(io: Io, done: (code: number) => void): Command {
  return new Command('ads')
    .description("Give peers your contacts advertised to you that have not expired (received by inbox)")
    .option(home.flag, home.about)
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      const ads = await withKeystore(resolveHome(flags.home, io.env), (k) => new Contacts(k).ads(Date.now()));
      if (flags.json) writeJson(io.stdout, ads);
      else for (const a of ads) writeLine(io.stdout, `${a.host}:${a.port} (${a.protocols.join(', ')}) from ${a.from.userId}:${a.from.deviceId}, until ${new Date(a.expiresAt).toISOString()}`);
      done(0);
    });
}
