import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { UserId } from '../../protocol/messages.js';
import { MAX_DEVICE_ID } from '../../protocol/version.js';
import { Inbox, type ReceivedMessage } from '../../roles/get/inbox.js';
import { requireCredential, signedClient, withKeystore } from '../agent-home.js';
import { parsePositiveInt, parseSeconds, resolveHome } from '../config.js';
import { readAll, writeJson, writeLine, type Io } from '../io.js';

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
    .option('--raw', 'send the text unencrypted (debugging; until end-to-end encryption lands every send is raw)')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print the result as JSON')
    .action(async (text: string | undefined, flags: { to: string; stdin?: boolean; raw?: boolean; home?: string; json?: boolean }) => {
      const to = parseRecipient(flags.to);
      const body = flags.stdin ? await readAll(io.stdin) : text;
      if (body === undefined || (text !== undefined && flags.stdin)) throw new LanternError('LA_ERR_USAGE', 'give the text as an argument or with --stdin (not both)');
      const id = randomUUID();
      const request = {
        id,
        to: to.userId,
        ...(to.deviceId !== undefined ? { deviceId: to.deviceId } : {}),
        type: 0,
        payload: Buffer.from(body, 'utf8').toString('base64'),
      };
      const answer = await withKeystore(resolveHome(flags.home, io.env), async (keystore) => {
        const api = await signedClient(await requireCredential(keystore), keystore);
        try {
          // The id makes a retry after a lost answer harmless: the server stores the message once.
          for (let attempt = 1; ; attempt++) {
            try {
              return await api.send(request);
            } catch (err) {
              if (attempt >= 3 || !LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE')) throw err;
              await new Promise((r) => setTimeout(r, 250 * attempt));
            }
          }
        } finally {
          await api.close();
        }
      });
      if (!flags.raw) writeLine(io.stderr, 'warning: sent without end-to-end encryption (not yet available)');
      if (flags.json) writeJson(io.stdout, { id, devices: answer.devices });
      else writeLine(io.stdout, `queued ${id} for device(s) ${answer.devices.join(', ') || 'none'}`);
      done(0);
    });
}

function show(io: Io, json: boolean | undefined, m: ReceivedMessage): void {
  if (json) writeJson(io.stdout, { id: m.id, from: m.from, sentAt: new Date(m.sentAt).toISOString(), text: m.text });
  else writeLine(io.stdout, `[${new Date(m.sentAt).toISOString()}] ${m.from.userId}:${m.from.deviceId}: ${m.text}`);
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
        const api = await signedClient(credential, keystore);
        const inbox = new Inbox({ api, keystore, logger });
        const abort = new AbortController();
        void io.stopSignal.then(() => abort.abort());
        try {
          let backoff = 0;
          for (;;) {
            let batch;
            try {
              batch = await inbox.receive(flags.follow ? Math.max(flags.wait, 30) : flags.wait, flags.limit, abort.signal);
              backoff = 0;
            } catch (err) {
              if (abort.signal.aborted) break;
              if (!flags.follow || !LanternError.is(err, 'LA_ERR_SERVER_UNREACHABLE')) throw err;
              backoff = Math.min(30_000, backoff * 2 || 500);
              logger.warn({ retryInMs: backoff }, 'server unreachable; retrying');
              await new Promise((r) => setTimeout(r, backoff));
              continue;
            }
            for (const m of batch?.messages ?? []) show(io, flags.json, m);
            if (abort.signal.aborted) break;
            if (!flags.follow) break;
          }
        } finally {
          await api.close();
        }
      });
      done(0);
    });
}
