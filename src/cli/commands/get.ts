import { Command } from 'commander';
import { systemClock } from '../../core/clock.js';
import { createLogger } from '../../core/logger.js';
import { Contacts } from '../../messaging/contacts.js';
import { Inbox } from '../../messaging/inbox.js';
import { createGet } from '../../roles/get/index.js';
import { openAgent, requireCredential, signedClient, withKeystore } from '../agent-home.js';
import { durationOption, parseListen, resolveHome } from '../config.js';
import { connectionCap } from '../fd-limit.js';
import { withConfigLayers } from '../config-layers.js';
import { writeJson, writeLine, type Io } from '../io.js';

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
    .option('--listen <host:port>', 'local address for the proxy', parseListen, { host: '127.0.0.1', port: 8118 })
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); must be logged in')
    .addOption(durationOption('--handshake-timeout <duration>', 'a local client must send its request within this', 30_000))
    .addOption(durationOption('--idle-timeout <duration>', 'close a tunnel with no byte either way this long', 600_000))
    .option('--json', 'print NDJSON events on stdout')
    .option('--log-level <level>', 'log level (stderr, JSON)', 'info')
    .option('--unsafe-logging', 'keep IP addresses in logs')
    .action(async (flags: GetFlags) => done(await runGet(io, flags)));
  return withConfigLayers(cmd, io);
}

async function runGet(io: Io, flags: GetFlags): Promise<number> {
  const logger = createLogger({ level: flags.logLevel, unsafeLogging: flags.unsafeLogging === true }).child({ component: 'get' });
  const home = resolveHome(flags.home, io.env);
  const credential = await withKeystore(home, requireCredential);
  const api = await signedClient(credential);
  /** An inbox on the home's keystore, opened for this use only (other commands on the home keep working). */
  const withInbox = <T>(use: (inbox: Inbox) => Promise<T>) =>
    withKeystore(home, async (keystore) => {
      const agent = await openAgent(keystore, credential);
      try {
        return await use(new Inbox({ api: agent.api, keystore, logger, deviceKeys: agent.deviceKeys, contacts: new Contacts(keystore), ...(agent.cipher ? { cipher: agent.cipher } : {}) }));
      } finally {
        await agent.api.close();
      }
    });
  const get = createGet(
    {
      api,
      clock: systemClock,
      logger,
      // The keystore is opened per use, so that other commands on this home keep working.
      ads: (now) => withKeystore(home, (k) => new Contacts(k).ads(now)),
      receive: (batch) => withInbox((inbox) => inbox.handle(batch).then((r) => r.messages)),
      topUpKeys: () => withInbox((inbox) => inbox.topUp()),
      onMessage: (m) => flags.json && writeJson(io.stdout, { event: 'message', id: m.id, from: m.from, ...(m.ad ? { ad: m.ad, adStatus: m.adStatus } : { text: m.text }) }),
    },
    { ...flags.listen, handshakeTimeoutMs: flags.handshakeTimeout, idleTimeoutMs: flags.idleTimeout, maxConnections: connectionCap(1024, 256, 2) },
  );
  await get.start();
  if (flags.json) writeJson(io.stdout, { event: 'listening', url: get.url, upstreams: get.upstreams });
  else writeLine(io.stderr, `lantern-agent get: local proxy on ${get.url} (${get.upstreams} give peer(s) known)`);
  const signal = await io.stopSignal;
  if (flags.json) writeJson(io.stdout, { event: 'stopping', signal });
  await get.stop();
  await api.close();
  if (flags.json) writeJson(io.stdout, { event: 'stopped' });
  return 0;
}
