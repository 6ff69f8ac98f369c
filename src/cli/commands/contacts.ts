import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { Contacts } from '../../messaging/contacts.js';
import { UserId } from '../../protocol/messages.js';
import { requireCredential, withKeystore } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';
import { senderLabel } from './messages.js';

const home = { flag: '--home <dir>', about: 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)' };

function userId(value: string): string {
  if (!UserId.safeParse(value).success) throw new LanternError('LA_ERR_USAGE', 'USERID must be a user id (UUID)');
  return value;
}

/** A contact's name stands for its user id on the command line: one per contact, no `:`, not an id. */
async function checkName(contacts: Contacts, name: string, user: string): Promise<void> {
  if (!/^[^\s:][^:]{0,63}$/.test(name) || UserId.safeParse(name).success) {
    throw new LanternError('LA_ERR_USAGE', '--name must be 1 to 64 characters, without ":", and not a user id');
  }
  const taken = (await contacts.list()).find((c) => c.userId !== user && c.name?.toLowerCase() === name.toLowerCase());
  if (taken) throw new LanternError('LA_ERR_USAGE', `${taken.userId} is already a contact named "${taken.name}"`);
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
        const contacts = new Contacts(k);
        const user = userId(id);
        if (flags.name !== undefined) await checkName(contacts, flags.name, user);
        return contacts.add(user, Date.now(), flags.name);
      });
      if (flags.json) writeJson(io.stdout, contact);
      else writeLine(io.stdout, `contact ${contact.userId} added${contact.name ? ` as ${contact.name}` : ''}`);
      done(0);
    });
  contacts
    .command('remove <contact>')
    .description('Forget a contact (a name or a user id) and the ads it sent')
    .option(home.flag, home.about)
    .action(async (id: string, flags: { home?: string }) => {
      const removed = await withKeystore(resolveHome(flags.home, io.env), async (k) => {
        const contacts = new Contacts(k);
        return contacts.remove(await contacts.resolve(id));
      });
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
      const { ads, names } = await withKeystore(resolveHome(flags.home, io.env), async (k) => ({ ads: await new Contacts(k).ads(Date.now()), names: await new Contacts(k).names() }));
      if (flags.json) writeJson(io.stdout, ads.map((a) => ({ ...a, ...(names.has(a.from.userId) ? { fromName: names.get(a.from.userId) } : {}) })));
      else for (const a of ads) writeLine(io.stdout, `${a.host}:${a.port} (${a.protocols.join(', ')}) from ${senderLabel(a.from, names)}, until ${new Date(a.expiresAt).toISOString()}`);
      done(0);
    });
}
