import { Command } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { Contacts } from '../../messaging/contacts.js';
import { Inbox } from '../../messaging/inbox.js';
import type { ApiClient } from '../../net/api-client.js';
import type { PeerEndpoint } from '../../net/tunnel.js';
import { LocalProxy } from '../../roles/get/local-proxy.js';
import { UpstreamPool, type UpstreamSource } from '../../roles/get/upstream-pool.js';
import { openAgent, requireCredential, signedClient, withKeystore } from '../agent-home.js';
import { durationOption, parseListen, resolveHome } from '../config.js';
import { connectionCap } from '../fd-limit.js';
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

const REFRESH_MS = 5000;

/**
 * Where get's upstreams come from: the server's verified round robin and the unexpired ads of
 * contacts (read from the keystore, which is opened only briefly so other commands keep working).
 */
class Upstreams implements UpstreamSource {
  #peers: PeerEndpoint[] = [];
  /** One ticket per give peer (by fingerprint): a ticket opens only the peer it names. */
  readonly #tickets = new Map<string, { ticket: string; expiresAt: number }>();

  constructor(
    private readonly api: ApiClient,
    private readonly home: string,
    private readonly logger: Logger,
  ) {}

  upstreams(): PeerEndpoint[] {
    return this.#peers;
  }

  async ticket(peer: string): Promise<string> {
    let held = this.#tickets.get(peer);
    if (!held || held.expiresAt - Date.now() < 60_000) {
      held = await this.api.ticket({ peer });
      this.#tickets.set(peer, held);
      for (const [k, v] of this.#tickets) if (v.expiresAt <= Date.now()) this.#tickets.delete(k);
    }
    return held.ticket;
  }

  async refresh(): Promise<void> {
    const verified = await this.api.roundRobin().catch((err: unknown) => {
      this.logger.warn({ code: (err as LanternError).code }, 'round robin unavailable');
      return [];
    });
    const ads = await withKeystore(this.home, (k) => new Contacts(k).ads(Date.now()));
    const seen = new Set<string>();
    this.#peers = [...verified, ...ads]
      .map(({ host, port, identityKey, sniName, ...rest }) => ({
        host,
        port,
        identityKey,
        ...(sniName ? { sniName } : {}),
        ...('plaintext' in rest && rest.plaintext ? { plaintext: true } : {}),
      }))
      .filter((p) => !seen.has(`${p.host}:${p.port}:${p.identityKey}`) && seen.add(`${p.host}:${p.port}:${p.identityKey}`));
  }
}

export function getCommand(io: Io, done: (code: number) => void): Command {
  return new Command('get')
    .description('Run the local proxy (HTTP CONNECT, HTTP forward, SOCKS5) that tunnels through give peers, and receive messages meanwhile')
    .option('--listen <host:port>', 'local address for the proxy', parseListen, { host: '127.0.0.1', port: 8118 })
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); must be logged in')
    .addOption(durationOption('--handshake-timeout <duration>', 'a local client must send its request within this', 30_000))
    .addOption(durationOption('--idle-timeout <duration>', 'close a tunnel with no byte either way this long', 600_000))
    .option('--json', 'print NDJSON events on stdout')
    .option('--log-level <level>', 'log level (stderr, JSON)', 'info')
    .option('--unsafe-logging', 'keep IP addresses in logs')
    .action(async (flags: GetFlags) => done(await runGet(io, flags)));
}

async function runGet(io: Io, flags: GetFlags): Promise<number> {
  const logger = createLogger({ level: flags.logLevel, unsafeLogging: flags.unsafeLogging === true }).child({ component: 'get' });
  const home = resolveHome(flags.home, io.env);
  const credential = await withKeystore(home, requireCredential);
  const api = await signedClient(credential);
  const source = new Upstreams(api, home, logger);
  await source.refresh();
  const pool = new UpstreamPool({ source, logger });
  const proxy = new LocalProxy(
    { pool, logger },
    { ...flags.listen, handshakeTimeoutMs: flags.handshakeTimeout, idleTimeoutMs: flags.idleTimeout, maxConnections: connectionCap(1024, 256, 2) },
  );
  await proxy.start();
  if (flags.json) writeJson(io.stdout, { event: 'listening', url: proxy.url, upstreams: source.upstreams().length });
  else writeLine(io.stderr, `lantern-agent get: local proxy on ${proxy.url} (${source.upstreams().length} give peer(s) known)`);
  const refresher = setInterval(() => void source.refresh().catch((err: unknown) => logger.warn({ err }, 'refresh failed')), REFRESH_MS);
  // Messages keep arriving while get runs: long-poll without holding the keystore, open it per batch.
  const abort = new AbortController();
  const receiving = (async () => {
    // Each stored batch is acked with the next poll (one request per batch); a failed poll keeps the acks.
    let acks: string[] = [];
    while (!abort.signal.aborted) {
      try {
        const batch = await api.poll(30, 100, abort.signal, acks);
        acks = [];
        if (!batch) continue;
        const got = await withKeystore(home, async (keystore) => {
          const agent = await openAgent(keystore, credential);
          try {
            const inbox = new Inbox({ api: agent.api, keystore, logger, deviceKeys: agent.deviceKeys, contacts: new Contacts(keystore), ...(agent.cipher ? { cipher: agent.cipher } : {}) });
            return await inbox.handle(batch, { deferAck: true });
          } finally {
            await agent.api.close();
          }
        });
        acks = got.acks;
        if (flags.json) for (const m of got.messages) writeJson(io.stdout, { event: 'message', id: m.id, from: m.from, ...(m.ad ? { ad: m.ad, adStatus: m.adStatus } : { text: m.text }) });
        if (got.messages.some((m) => m.adStatus === 'accepted')) await source.refresh();
      } catch (err) {
        if (abort.signal.aborted) break;
        logger.warn({ code: (err as LanternError).code }, 'receiving failed; retrying');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
    if (acks.length) await api.ack(acks).catch((err: unknown) => logger.warn({ code: (err as LanternError).code }, 'final ack failed; the messages come again and are dropped as seen'));
  })();
  const signal = await io.stopSignal;
  if (flags.json) writeJson(io.stdout, { event: 'stopping', signal });
  clearInterval(refresher);
  abort.abort();
  await receiving;
  await proxy.stop();
  pool.close();
  await api.close();
  if (flags.json) writeJson(io.stdout, { event: 'stopped' });
  return 0;
}
