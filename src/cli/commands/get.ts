import { Command, Option } from 'commander';
import { systemClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import { releaseStackLog } from '../../net/ice/stack-log.js';
import { Contacts } from '../../messaging/contacts.js';
import { Inbox, type ReceivedMessage } from '../../messaging/inbox.js';
import { createGet } from '../../roles/get/index.js';
import type { UpstreamChange } from '../../roles/get/upstreams.js';
import { requireCredential, signedClient, withKeystore } from '../agent-home.js';
import { hasSignalIdentity, iceSignaling, withInbox } from '../home-messaging.js';
import { durationOption, parseListen, resolveHome, logFormatOption } from '../config.js';
import { connectionCap } from '../fd-limit.js';
import { withConfigLayers } from '../config-layers.js';
import { writeJson, writeLine, logOptions, type Io } from '../io.js';
import { senderLabel } from './messages.js';
import { growHeapInLargeSteps } from '../../core/malloc-tuning.js';

interface GetFlags {
  listen: { host: string; port: number };
  handshakeTimeout: number;
  idleTimeout: number;
  home?: string;
  json?: boolean;
  logLevel: string;
  unsafeLogging?: boolean;
}

export function getCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('get')
    .description('Run the local proxy (HTTP CONNECT, HTTP forward, SOCKS5) that tunnels through give peers, and receive messages meanwhile')
    .addOption(new Option('--listen <host:port>', 'local address for the proxy').argParser(parseListen).default({ host: '127.0.0.1', port: 8118 }, '127.0.0.1:8118'))
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); must be logged in')
    .addOption(durationOption('--handshake-timeout <duration>', 'a local client must send its request within this', 30_000))
    .addOption(durationOption('--idle-timeout <duration>', 'close a tunnel with no byte either way this long', 600_000))
    .option('--json', 'print NDJSON events on stdout')
    .option('--log-level <level>', 'log level (stderr)', 'info')
    .addOption(logFormatOption())
    .option('--unsafe-logging', 'keep IP addresses in logs')
    .action(async (flags: GetFlags) => done(await runGet(io, flags).finally(releaseStackLog)));
  return withConfigLayers(cmd, io);
}

async function runGet(io: Io, flags: GetFlags): Promise<number> {
  // A proxy: old-generation limits that relaying cannot outrun (see malloc-tuning.ts).
  growHeapInLargeSteps();
  const logger = createLogger(logOptions(io, flags)).child({ component: 'get' });
  const home = resolveHome(flags.home, io.env);
  const credential = await withKeystore(home, requireCredential);
  const api = await signedClient(credential);
  /** An inbox on the home's keystore, opened for this use only (other commands on the home keep working). */
  const inboxOf = <T>(use: (inbox: Inbox, contacts: Contacts) => Promise<T>) => withInbox(home, credential, logger, use);
  /** Contacts' names, read with each batch received (for the arrival lines). */
  let names: ReadonlyMap<string, string> = new Map();
  const get = createGet(
    {
      api,
      clock: systemClock,
      logger,
      // The keystore is opened per use, so that other commands on this home keep working.
      ads: (now) => withKeystore(home, (k) => new Contacts(k).ads(now)),
      receive: (batch) =>
        inboxOf(async (inbox, contacts) => {
          const { messages } = await inbox.handle(batch);
          if (messages.length) names = await contacts.names();
          return messages;
        }),
      topUpKeys: () => inboxOf((inbox) => inbox.topUp()),
      // Give peers behind a NAT are reached over WebRTC, signaled by end-to-end encrypted messages.
      ...((await hasSignalIdentity(home)) ? { signaling: iceSignaling(home, credential, logger) } : {}),
      onUpstreams: (change) => {
        if (flags.json) writeJson(io.stdout, { event: 'upstreams', added: change.added.length, removed: change.removed.length, total: change.total, serverReachable: change.serverReachable });
        else for (const line of upstreamLines(change)) writeLine(io.stderr, `lantern-agent get: ${line}`);
      },
      onMessage: (m) => {
        if (flags.json) writeJson(io.stdout, { event: 'message', id: m.id, from: m.from, ...(m.ad ? { ad: m.ad, adStatus: m.adStatus } : { text: m.text }) });
        else writeLine(io.stdout, arrivalLine(m, names));
      },
    },
    { ...flags.listen, handshakeTimeoutMs: flags.handshakeTimeout, idleTimeoutMs: flags.idleTimeout, maxConnections: connectionCap(1024, 256, 2) },
  );
  await get.start();
  if (flags.json) writeJson(io.stdout, { event: 'listening', url: get.url, upstreams: get.upstreams });
  else {
    const known = get.upstreams;
    const why = !get.serverReachable
      ? 'the server cannot be reached; requests get 503 until it can'
      : known === 0
        ? 'none yet: a give peer is used once a verifier passes it or a contact sends its ad; requests get 503 until then'
        : 'requests go through them';
    writeLine(io.stderr, `lantern-agent get: local proxy on ${get.url} (${known} give peer(s) known; ${why})`);
  }
  const signal = await io.stopSignal;
  if (flags.json) writeJson(io.stdout, { event: 'stopping', signal });
  await get.stop();
  await api.close();
  if (flags.json) writeJson(io.stdout, { event: 'stopped' });
  return 0;
}

/** One line per message get received: it stays unread in the home until `messages` or `inbox` shows it. */
function arrivalLine(m: ReceivedMessage, names: ReadonlyMap<string, string>): string {
  const who = senderLabel(m.from, names);
  if (m.error) return `message ${m.id} from ${who} could not be decrypted (${m.error.code}); kept, see \`lantern-agent messages\``;
  if (m.ad) return `availability ad from ${who}: ${m.ad.host}:${m.ad.port} (${m.adStatus === 'accepted' ? 'kept, in use now' : `ignored: ${m.adStatus}`})`;
  return `message from ${who}: ${m.text ?? ''}  (kept unread: \`lantern-agent messages\`)`;
}

/** Human lines for a change of upstreams: peers that came or went, the server lost or back. */
function upstreamLines(change: UpstreamChange): string[] {
  const lines: string[] = [];
  if (change.serverChanged) lines.push(change.serverReachable ? 'the server answers again' : `the server cannot be reached; keeping the ${change.total} give peer(s) known`);
  const where = (p: { host: string; port: number; ice?: unknown }) => (p.ice ? `${p.host} (behind a NAT, over WebRTC)` : `${p.host.includes(':') ? `[${p.host}]` : p.host}:${p.port}`);
  for (const p of change.added) lines.push(`give peer ${where(p)} available (${change.total} known)`);
  for (const p of change.removed) lines.push(`give peer ${where(p)} gone (${change.total} known${change.total === 0 ? '; requests get 503 until another is verified' : ''})`);
  return lines;
}
