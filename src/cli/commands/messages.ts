import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { UserId, type SkippedDevice } from '../../protocol/messages.js';
import { MAX_DEVICE_ID } from '../../protocol/version.js';
import { Contacts } from '../../messaging/contacts.js';
import { Inbox, type ReceivedMessage } from '../../messaging/inbox.js';
import { Messenger } from '../../messaging/messenger.js';
import { longPoll } from '../../net/long-poll.js';
import { retry, type BackoffPolicy } from '../../net/retry.js';
import { openAgent, requireCredential, withKeystore } from '../agent-home.js';
import { parsePositiveInt, parseSeconds, resolveHome } from '../config.js';
import { readAll, writeJson, writeLine, type Io } from '../io.js';

/** A plaintext send that could not reach the server: again after 250 ms, then 500 ms. */
const SEND_BACKOFF: BackoffPolicy = { initialMs: 250, maxMs: 500, factor: 2 };

function parseRecipient(value: string): { userId: string; deviceId?: number } {
  const [user, device, ...rest] = value.split(':');
  const deviceId = device === undefined ? undefined : Number(device);
  if (
    rest.length > 0 ||
    !UserId.safeParse(user).success ||
    (deviceId !== undefined && !(Number.isInteger(deviceId) && deviceId >= 1 && deviceId <= MAX_DEVICE_ID))
  ) {
    throw new LanternError('LA_ERR_USAGE', '--to must be USERID or USERID:DEVICE (a UUID and 1..127)');
  }
  return { userId: user!, ...(deviceId !== undefined ? { deviceId } : {}) };
}

export function sendCommand(io: Io, done: (code: number) => void): Command {
  return new Command('send')
    .description('Send a message to every device of a user, or to one device (USERID:DEVICE)')
    .argument('[text]', 'message text (or --stdin)')
    .requiredOption('--to <userId[:device]>', 'recipient')
    .option('--stdin', 'read the message from stdin')
    .option('--raw', 'send the text WITHOUT end-to-end encryption (debugging); allows USERID:DEVICE')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print the result as JSON')
    .action(async (text: string | undefined, flags: { to: string; stdin?: boolean; raw?: boolean; home?: string; json?: boolean }) => {
      const to = parseRecipient(flags.to);
      const body = flags.stdin ? await readAll(io.stdin) : text;
      if (body === undefined || (text !== undefined && flags.stdin)) throw new LanternError('LA_ERR_USAGE', 'give the text as an argument or with --stdin (not both)');
      const logger = createLogger({ level: 'warn' });
      const result = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
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

function show(io: Io, json: boolean | undefined, m: ReceivedMessage): void {
  const sentAt = new Date(m.sentAt).toISOString();
  if (m.error) {
    // Kept in the keystore with its ciphertext; reported, never dropped.
    if (json) writeJson(io.stdout, { id: m.id, from: m.from, sentAt, encrypted: true, error: m.error });
    writeLine(io.stderr, `error ${m.error.code}: message ${m.id} from ${m.from.userId}:${m.from.deviceId} could not be decrypted (kept; the session is rebuilt): ${m.error.message}`);
    return;
  }
  if (m.ad) {
    if (json) writeJson(io.stdout, { id: m.id, from: m.from, sentAt, encrypted: true, ad: m.ad, adStatus: m.adStatus });
    else writeLine(io.stdout, `[${sentAt}] ${m.from.userId}:${m.from.deviceId}: availability ad ${m.ad.host}:${m.ad.port} (${m.adStatus === 'accepted' ? 'kept' : `ignored: ${m.adStatus}`})`);
    return;
  }
  if (json) writeJson(io.stdout, { id: m.id, from: m.from, sentAt, encrypted: m.encrypted, text: m.text });
  else writeLine(io.stdout, `[${sentAt}] ${m.from.userId}:${m.from.deviceId}${m.encrypted ? '' : ' (unencrypted)'}: ${m.text}`);
}

export function inboxCommand(io: Io, done: (code: number) => void): Command {
  return new Command('inbox')
    .description('Receive messages: long-poll, store each in the keystore, then ack it')
    .option('--wait <seconds>', 'how long to wait for a message (0..60)', parseSeconds, 0)
    .option('--follow', 'keep receiving until interrupted')
    .option('--limit <n>', 'messages per batch', parsePositiveInt, 100)
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'one NDJSON object per message: id, from, sentAt, text')
    .action(async (flags: { wait: number; follow?: boolean; limit: number; home?: string; json?: boolean }) => {
      const logger = createLogger({ level: 'warn' });
      await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const credential = await requireCredential(keystore);
        const { api, cipher, deviceKeys } = await openAgent(keystore, credential);
        const inbox = new Inbox({ api, keystore, logger, deviceKeys, contacts: new Contacts(keystore), ...(cipher ? { cipher } : {}) });
        const abort = new AbortController();
        void io.stopSignal.then(() => abort.abort());
        const wait = flags.follow ? Math.max(flags.wait, 30) : flags.wait;
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
              for (const m of got.messages) show(io, flags.json, m);
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
