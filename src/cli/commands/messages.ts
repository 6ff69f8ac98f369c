import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import type { SkippedDevice } from '../../protocol/messages.js';
import { MAX_DEVICE_ID } from '../../protocol/version.js';
import { Contacts } from '../../messaging/contacts.js';
import { Inbox, type ReceivedMessage } from '../../messaging/inbox.js';
import { MessageStore } from '../../messaging/message-store.js';
import { Messenger } from '../../messaging/messenger.js';
import { longPoll } from '../../net/long-poll.js';
import { retry, type BackoffPolicy } from '../../net/retry.js';
import { openAgent, requireCredential, withKeystore } from '../agent-home.js';
import { durationOption, parsePositiveInt, resolveHome } from '../config.js';
import { readAll, writeJson, writeLine, type Io } from '../io.js';

/** A plaintext send that could not reach the server: again after 250 ms, then 500 ms. */
const SEND_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 500, factor: 2 };

/** `--to NAME|USERID[:DEVICE]`: the user part is resolved against contacts once the keystore is open. */
function parseRecipient(value: string): { user: string; deviceId?: number } {
  const match = /^([^:]+)(?::(\d+))?$/.exec(value);
  const deviceId = match?.[2] === undefined ? undefined : Number(match[2]);
  if (!match || (deviceId !== undefined && !(deviceId >= 1 && deviceId <= MAX_DEVICE_ID))) {
    throw new LanternError('LA_ERR_USAGE', '--to must be NAME, USERID or USERID:DEVICE (a contact name or UUID, and 1..127)');
  }
  return { user: match[1]!, ...(deviceId !== undefined ? { deviceId } : {}) };
}

export function sendCommand(io: Io, done: (code: number) => void): Command {
  return new Command('send')
    .description('Send a message to every device of a user, or to one device (USERID:DEVICE)')
    .argument('[text]', 'message text (or --stdin)')
    .requiredOption('--to <name|userId[:device]>', "recipient: a contact's name or a user id")
    .option('--stdin', 'read the message from stdin')
    .option('--raw', 'send the text WITHOUT end-to-end encryption (debugging); allows USERID:DEVICE')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print the result as JSON')
    .action(async (text: string | undefined, flags: { to: string; stdin?: boolean; raw?: boolean; home?: string; json?: boolean }) => {
      const recipient = parseRecipient(flags.to);
      const body = flags.stdin ? await readAll(io.stdin) : text;
      if (body === undefined || (text !== undefined && flags.stdin)) throw new LanternError('LA_ERR_USAGE', 'give the text as an argument or with --stdin (not both)');
      const logger = createLogger({ level: 'warn' });
      const result = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
        const to = { ...recipient, userId: await new Contacts(keystore).resolve(recipient.user) };
        const { api, cipher } = await openAgent(keystore, credential);
        try {
          if (flags.raw) {
            const id = randomUUID();
            const request = {
              id,
              to: to.userId,
              ...(to.deviceId !== undefined ? { deviceId: to.deviceId } : {}),
              type: 0,
              payload: Buffer.from(body, 'utf8').toString('base64'),
            };
            // The id makes a retry after a lost answer harmless: the server stores the message once.
            const answer = await retry(() => api.send(request), {
              clock: systemClock,
              attempts: 3,
              policy: SEND_BACKOFF,
              retryable: (err) => LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE'),
            });
            return { id, devices: answer.devices, ...(answer.skipped ? { skipped: answer.skipped } : {}), encrypted: false };
          }
          if (to.deviceId !== undefined) throw new LanternError('LA_ERR_USAGE', 'USERID:DEVICE works with --raw only; encrypted messages go to every device');
          if (!cipher) throw new LanternError('LA_ERR_NOT_LOGGED_IN', 'This home has no Signal identity; run `lantern-agent login` again');
          const messenger = new Messenger({ api, keystore, cipher, logger }, { userId: credential.userId, deviceId: credential.deviceId });
          const sent = await messenger.send(to.userId, body);
          return { ...sent, encrypted: true };
        } finally {
          await api.close();
        }
      });
      if (!result.encrypted) writeLine(io.stderr, 'warning: --raw: sent WITHOUT end-to-end encryption');
      if (flags.json) writeJson(io.stdout, result);
      else writeLine(io.stdout, `${result.encrypted ? 'sent encrypted' : 'queued'} ${result.id} for device(s) ${result.devices.join(', ') || 'none'}${skippedText(result.skipped)}`);
      done(0);
    });
}

/** `; skipped device(s) 2 (dormant), 3 (full)`, or nothing. */
function skippedText(skipped: readonly SkippedDevice[] | undefined): string {
  return skipped?.length ? `; skipped device(s) ${skipped.map((s) => `${s.deviceId} (${s.reason})`).join(', ')}` : '';
}

/** `bob:1` for a contact named bob, else `USERID:DEVICE`. */
export function senderLabel(from: { userId: string; deviceId: number }, names: ReadonlyMap<string, string>): string {
  return `${names.get(from.userId) ?? from.userId}:${from.deviceId}`;
}

/** One message, as `inbox` and `messages` print it (NDJSON with --json); errors go to stderr. */
function show(io: Io, json: boolean | undefined, m: ReceivedMessage, names: ReadonlyMap<string, string>): void {
  const sentAt = new Date(m.sentAt).toISOString();
  const name = names.get(m.from.userId);
  const base = { id: m.id, from: m.from, ...(name ? { fromName: name } : {}), sentAt };
  const who = senderLabel(m.from, names);
  if (m.error) {
    // Kept in the keystore with its ciphertext; reported, never dropped.
    if (json) writeJson(io.stdout, { ...base, encrypted: true, error: m.error });
    writeLine(io.stderr, `error ${m.error.code}: message ${m.id} from ${who} could not be decrypted (kept; the session is rebuilt): ${m.error.message}`);
    return;
  }
  if (m.ad) {
    if (json) writeJson(io.stdout, { ...base, encrypted: true, ad: m.ad, adStatus: m.adStatus });
    else writeLine(io.stdout, `[${sentAt}] ${who}: availability ad ${m.ad.host}:${m.ad.port} (${m.adStatus === 'accepted' ? 'kept' : `ignored: ${m.adStatus}`})`);
    return;
  }
  if (json) writeJson(io.stdout, { ...base, encrypted: m.encrypted, text: m.text });
  else writeLine(io.stdout, `[${sentAt}] ${who}${m.encrypted ? '' : ' (unencrypted)'}: ${m.text}`);
}

export function inboxCommand(io: Io, done: (code: number) => void): Command {
  return new Command('inbox')
    .description('Receive messages: show the unread ones already stored, then long-poll, store each new one in the keystore, and ack it')
    .addOption(durationOption('--wait <duration>', 'how long to wait for a message (0..60 s)', 0, { max: 60_000 }))
    .option('--follow', 'keep receiving until interrupted')
    .option('--limit <n>', 'messages per batch', parsePositiveInt, 100)
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'one NDJSON object per message: id, from, fromName, sentAt, text')
    .action(async (flags: { wait: number; follow?: boolean; limit: number; home?: string; json?: boolean }) => {
      const logger = createLogger({ level: 'warn' });
      await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
        const names = await new Contacts(keystore).names();
        const store = new MessageStore(keystore);
        // What arrived while another command received (get) and nobody has read yet comes first.
        const unread = (await store.list()).filter((m) => !m.read);
        for (const m of unread) show(io, flags.json, m, names);
        await store.markRead(unread.map((m) => m.id));
        const { api, cipher, deviceKeys } = await openAgent(keystore, credential);
        const inbox = new Inbox({ api, keystore, logger, deviceKeys, contacts: new Contacts(keystore), ...(cipher ? { cipher } : {}) });
        const abort = new AbortController();
        void io.stopSignal.then(() => abort.abort());
        const waitSeconds = Math.round(flags.wait / 1000);
        const wait = flags.follow ? Math.max(waitSeconds, 30) : waitSeconds;
        try {
          await longPoll({
            clock: systemClock,
            logger,
            signal: abort.signal,
            follow: flags.follow === true,
            poll: async (acks, signal) => {
              const batch = await api.poll(wait, flags.limit, signal, acks);
              if (api.takeKeysLow()) await inbox.topUp();
              return batch;
            },
            handle: async (batch) => {
              const got = await inbox.handle(batch);
              // ICE signaling belongs to a give or get session elsewhere; it is not shown.
              for (const m of got.messages) if (!m.ice) show(io, flags.json, m, names);
              await store.markRead(got.messages.map((m) => m.id));
            },
            ack: (ids) => api.ack(ids),
            // --follow waits out a server that is away; anything else is the user's to see.
            retryable: (err) => flags.follow === true && LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE'),
          });
        } finally {
          await api.close();
        }
      });
      done(0);
    });
}

interface MessagesFlags {
  unread?: boolean;
  from?: string;
  limit?: number;
  markRead: boolean;
  home?: string;
  json?: boolean;
}

export function messagesCommand(io: Io, done: (code: number) => void): Command {
  return new Command('messages')
    .description('List the messages this home has received and stored (unread first, oldest first), or show one by id; what is shown is marked read')
    .argument('[id]', 'show only this message')
    .option('--unread', 'only messages not shown yet')
    .option('--from <name|userId>', "only messages from this contact (a name) or user")
    .option('--limit <n>', 'at most this many', parsePositiveInt)
    .option('--no-mark-read', 'leave what is shown unread')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'one NDJSON object per message, with `read`')
    .action(async (id: string | undefined, flags: MessagesFlags) => {
      const count = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        await requireCredential(keystore);
        const contacts = new Contacts(keystore);
        const names = await contacts.names();
        const store = new MessageStore(keystore);
        const from = flags.from === undefined ? undefined : await contacts.resolve(flags.from);
        let list = id === undefined ? await store.list() : [await store.get(id)].filter((m): m is ReceivedMessage => m !== undefined);
        if (id !== undefined && list.length === 0) throw new LanternError('LA_ERR_NOT_FOUND', `No stored message ${id}`);
        list = list.filter((m) => (!flags.unread || !m.read) && (!from || m.from.userId === from)).slice(0, flags.limit);
        for (const m of list) {
          if (flags.json) showJsonWithRead(io, m, names);
          else {
            if (!m.read) io.stdout.write('* ');
            else io.stdout.write('  ');
            show(io, false, m, names);
          }
        }
        if (flags.markRead) await store.markRead(list.map((m) => m.id));
        return list.length;
      });
      if (!flags.json && count === 0) writeLine(io.stderr, flags.unread ? 'no unread messages' : 'no messages stored');
      done(0);
    });
}

function showJsonWithRead(io: Io, m: ReceivedMessage, names: ReadonlyMap<string, string>): void {
  const name = names.get(m.from.userId);
  const { payload: _payload, type: _type, ...rest } = m;
  writeJson(io.stdout, { ...rest, ...(name ? { fromName: name } : {}), sentAt: new Date(m.sentAt).toISOString(), read: m.read === true });
}
