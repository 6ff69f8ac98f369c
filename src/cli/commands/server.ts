import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { CanaryMaker } from '../../crypto/canary.js';
import { MAX_POLL_WAIT_SECONDS } from '../../protocol/version.js';
import {
  dataDirPaths,
  ensureDataDir,
  loadOrCreateCa,
  loadOrCreateAddressKey,
  loadOrCreateCanarySecret,
  loadOrCreateSelfSignedTls,
  loadOrCreateTicketIssuer,
} from '../../roles/server/data-dir.js';
import { normalizeZone } from '../../roles/server/dns-answer.js';
import { defaultClientAddressOptions, parseTrustedRanges } from '../../roles/server/client-address.js';
import { createServer, type ServerRoleOptions } from '../../roles/server/index.js';
import { defaultListenerLimits } from '../../roles/server/lantern-server.js';
import { defaultServerOptions, type ServerOptions } from '../../roles/server/options.js';
import { defaultPeerjsOptions } from '../../roles/server/peerjs-broker.js';
import { RedisPeerjsDirectory } from '../../storage/peerjs-directory.js';
import { tightenedText } from '../../storage/private-dir.js';
import { withConfigLayers } from '../config-layers.js';
import { countOption, durationOption, parseCount, parseListen, parsePositiveInt, parseRate, logFormatOption } from '../config.js';
import { listenerCaps } from '../fd-limit.js';
import { writeJson, writeLine, logOptions, type Io } from '../io.js';
import { openServerStore, resolveStoreSpec, storeCaOption, storeOption, type StoreSpec } from '../store-spec.js';

interface ServerFlags {
  listen: { host: string; port: number };
  dataDir: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsSelfSigned?: boolean;
  json?: boolean;
  openRegistration?: boolean;
  retention: number;
  expireInterval: number;
  queueMaxMessages: number;
  queueMaxBytes: number;
  queueSenderShare: number;
  dormantAfter: number;
  certLifetime: number;
  sessionLifetime: number;
  sessionsPerDevice: number;
  ticketLifetime: number;
  peerTtl: number;
  peerPauseAfter: number;
  verdictTtl: number;
  verifierQuorum: number;
  ratePair: ServerOptions['rate']['pair'];
  rateRecipientBytes: ServerOptions['rate']['pair'];
  rateLoginAddress: ServerOptions['rate']['pair'];
  rateLoginAccount: ServerOptions['rate']['pair'];
  rateLoginAccountTotal: ServerOptions['rate']['pair'];
  ratePrekeyFetch: ServerOptions['rate']['pair'];
  ratePrekeyTarget: ServerOptions['rate']['pair'];
  ratePeerReport: ServerOptions['rate']['pair'];
  rateReachability: ServerOptions['rate']['pair'];
  fsync: boolean;
  storeWaitReplicas: number;
  store: StoreSpec;
  storeCa?: string;
  dnsListen?: { host: string; port: number };
  zone?: string;
  dnsTtl: number;
  dnsRate: number;
  stunListen?: { host: string; port: number };
  stunUrl?: string[];
  stunRate: number;
  turnUrl?: string[];
  turnSecretFile?: string;
  turnTtl: number;
  minRotation: number;
  metricsListen?: { host: string; port: number };
  metricsTokenFile?: string;
  peerjs: boolean;
  peerjsPath: string;
  peerjsKey: string;
  peerjsExpireTimeout: number;
  peerjsAliveTimeout: number;
  peerjsConcurrentLimit: number;
  peerjsAllowDiscovery?: boolean;
  peerjsRequireAuth?: boolean;
  headerTimeout: number;
  bodyTimeout: number;
  idleTimeout: number;
  maxConnections?: number;
  maxConnectionsPerAddress: number;
  /** Whether --max-connections-per-address was left at its default (then it is at most a quarter of the total). */
  perAddressIsDefault?: boolean;
  trustProxy: string[];
  canaryOrigin: string[];
  clientAddressHeader: string;
  ipv4Prefix: number;
  ipv6Prefix: number;
  logLevel: string;
  unsafeLogging?: boolean;
}

/** The PeerJS client forces its path to start and end with `/`; so does the broker. */
function parsePeerjsPath(value: string): string {
  if (!/^[A-Za-z0-9._~/-]*$/.test(value)) throw new InvalidArgumentError('expected a URL path such as / or /signal/');
  return `/${value}/`.replace(/\/{2,}/g, '/');
}

/** `--trust-proxy`: comma-separated addresses or CIDRs, each checked. */
function parseCidrList(value: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter(Boolean);
  try {
    parseTrustedRanges(list);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message.replace(/^--trust-proxy /, ''));
  }
  return list;
}

/** `--canary-origin`: comma-separated http(s)://HOST[:PORT] origins, each normalised. */
function parseOrigins(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      let url: URL;
      try {
        url = new URL(s);
      } catch {
        throw new InvalidArgumentError(`${s}: expected http(s)://HOST[:PORT]`);
      }
      if (!/^https?:$/.test(url.protocol) || (url.pathname !== '/' && url.pathname !== '') || url.search || url.username) throw new InvalidArgumentError(`${s}: expected http(s)://HOST[:PORT], nothing more`);
      return `${url.protocol}//${url.host}`;
    });
}

/** A fraction in (0, 1]. */
function parseFraction(value: string): number {
  const n = Number(value);
  if (!/^(0|1)?(\.\d+)?$/.test(value.trim()) || !(n > 0 && n <= 1)) throw new InvalidArgumentError('expected a fraction 0 < x <= 1, such as 0.25');
  return n;
}

/** A prefix length of at most `max` bits. */
const parsePrefix = (max: number) => (value: string): number => {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > max) throw new InvalidArgumentError(`expected 1..${max}`);
  return n;
};

const rateText = (r: { capacity: number; refillPerSecond: number }) => `${r.capacity}/${r.refillPerSecond}`;
/** A token-bucket option (`BURST/PER_SECOND`) with its default. */
const rateOption = (flags: string, description: string, policy: { capacity: number; refillPerSecond: number }) =>
  new Option(flags, description).argParser(parseRate).default(policy, rateText(policy));

/** The options of a server behind a CDN or reverse proxy: who to believe, how to count clients, other fronts. */
function addFrontOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--trust-proxy <cidrs>', 'proxies (a CDN\'s edges, a local nginx) whose client address header is believed: addresses or CIDRs, comma-separated; default none')
        .argParser(parseCidrList)
        .default([], 'none'),
    )
    .addOption(
      new Option('--client-address-header <name>', 'the header trusted proxies name the client in (the right-most untrusted hop counts)')
        .choices(['X-Forwarded-For', 'CF-Connecting-IP', 'Forwarded'])
        .default(defaultClientAddressOptions.header),
    )
    .addOption(
      new Option('--canary-origin <urls>', "other fronts of this server (such as a CDN hostname) verifiers fetch canaries from, so a probe does not go to the server's own address: http(s)://HOST[:PORT], comma-separated; default none")
        .argParser(parseOrigins)
        .default([], 'none'),
    )
    .option('--ipv4-prefix <bits>', 'per-address limits count IPv4 networks of this size', parsePrefix(32), defaultClientAddressOptions.prefix.v4)
    .option('--ipv6-prefix <bits>', 'per-address limits count IPv6 networks of this size', parsePrefix(128), defaultClientAddressOptions.prefix.v6);
}

export function serverCommand(io: Io, done: (code: number) => void): Command {
  const d = defaultServerOptions;
  const cmd = new Command('server')
    .description('Run the signaling server: login, credentials, store-and-forward messages')
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port); required', parseListen)
    .option('--data-dir <dir>', 'directory for the LevelDB store and the CA; required')
    .option('--tls-cert <file>', 'TLS certificate (PEM)')
    .option('--tls-key <file>', 'TLS private key (PEM)')
    .option('--tls-self-signed', 'serve TLS with a certificate signed by the server CA (ca.pem in the data dir)')
    .option('--json', 'print NDJSON events on stdout')
    .option('--open-registration', 'let `login --register` create accounts')
    .addOption(durationOption('--retention <duration>', 'delete undelivered messages after', d.retentionMs))
    .addOption(durationOption('--expire-interval <duration>', 'how often the retention job runs', d.expireIntervalMs))
    .option('--queue-max-messages <n>', 'messages a device queue holds at most', parsePositiveInt, d.queue.maxMessages)
    .option('--queue-max-bytes <n>', 'payload bytes a device queue holds at most', parsePositiveInt, d.queue.maxBytes)
    .option('--queue-sender-share <fraction>', 'what one sender may hold of a device queue (messages and bytes), 0 < x <= 1', parseFraction, d.queueSenderShare)
    .addOption(durationOption('--dormant-after <duration>', 'a device that has not polled this long gets no more messages, and what it has is deleted', d.dormantAfterMs))
    .addOption(durationOption('--cert-lifetime <duration>', 'lifetime of device certificates', d.certificateLifetimeMs))
    .addOption(durationOption('--peer-ttl <duration>', 'a give peer registration lives this long after its last heartbeat', d.peerTtlMs))
    .addOption(durationOption('--peer-pause-after <duration>', 'pause a peer that fails verification this long', d.peerPauseAfterMs))
    .addOption(durationOption('--verdict-ttl <duration>', 'a verified peer without a fresh pass this long leaves the round robin', d.verdictTtlMs))
    .option('--verifier-quorum <n>', 'verifiers (each its latest verdict) that must pass a peer to admit it, or fail it to evict it', parsePositiveInt, d.verifierQuorum)
    .addOption(durationOption('--ticket-lifetime <duration>', 'lifetime of proxy tickets', d.ticketLifetimeMs))
    .option('--sessions-per-device <n>', 'request-signing sessions (LA1S) a device holds at most; the oldest ends first', parsePositiveInt, d.sessionsPerDevice)
    .addOption(durationOption('--session-lifetime <duration>', 'lifetime of request-signing sessions (LA1S)', d.sessionLifetimeMs))
    .addOption(rateOption('--rate-pair <burst/per-s>', 'messages per sender device -> recipient', d.rate.pair))
    .addOption(rateOption('--rate-recipient-bytes <burst/per-s>', 'payload bytes per recipient', d.rate.recipientBytes))
    .addOption(rateOption('--rate-login-address <burst/per-s>', 'login attempts per client network (--ipv4-prefix, --ipv6-prefix)', d.rate.loginPerAddress))
    .addOption(rateOption('--rate-login-account <burst/per-s>', 'login attempts per account from one client network', d.rate.loginPerAccount))
    .addOption(rateOption('--rate-login-account-total <burst/per-s>', 'login attempts per account from all networks', d.rate.loginPerAccountTotal))
    .addOption(rateOption('--rate-prekey-fetch <burst/per-s>', 'prekey bundle fetches per requester device -> target device', d.rate.prekeyFetch))
    .addOption(rateOption('--rate-peer-report <burst/per-s>', 'reports of failing give peers per user (each asks the verifiers for a probe)', d.rate.peerReport))
    .addOption(rateOption('--rate-reachability <burst/per-s>', "reachability checks per user (each makes the server dial the user's give peer)", d.rate.reachability))
    .addOption(rateOption('--rate-prekey-target <burst/per-s>', 'one-time prekeys handed out per target device, whoever asks (beyond: bundles without them)', d.rate.prekeyTarget))
    .option('--dns-listen <host:port>', 'also answer DNS (UDP and TCP) for the round robin zone here', parseListen)
    .option('--zone <zone>', 'the DNS zone: roundrobin.ZONE (verified peers), <peer-id>.peers.ZONE (each registered peer)')
    .addOption(durationOption('--dns-ttl <duration>', 'TTL of DNS answers', 30_000))
    .option('--dns-rate <n>', 'UDP DNS answers per second to one client network (/24, /56; bursts of twice that); 0: no limit', parseCount, 20)
    .option('--stun-listen <host:port>', 'answer STUN Binding requests (UDP) here, so give and get behind NAT learn their public address for ICE', parseListen)
    .option('--stun-url <url...>', 'the STUN servers clients are told of (stun:HOST:PORT); default: --stun-listen, named by the host clients reach the API at', parseIceUrl('stun'))
    .option('--stun-rate <n>', 'STUN answers per second to one client network (/24, /56; bursts of twice that); 0: no limit', parseCount, 20)
    .option('--turn-url <url...>', 'TURN servers (turn:HOST:PORT[?transport=udp|tcp], turns:…) sharing --turn-secret-file, for peers whose NAT defeats ICE', parseIceUrl('turn'))
    .option('--turn-secret-file <file>', "the TURN REST API shared secret (coturn's static-auth-secret) in this file's first line")
    .addOption(durationOption('--turn-ttl <duration>', 'how long a TURN credential the server mints lasts', 3600_000))
    .option('--min-rotation <n>', 'warn (log line and metric) when fewer verified peers are in the round robin', parseCount, 0)
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics', parseListen)
    .option('--metrics-token-file <file>', 'require Authorization: Bearer <the token in this file> for /metrics')
    .addOption(durationOption('--header-timeout <duration>', 'a request line and headers (and a TLS handshake) must arrive within this', defaultListenerLimits.headerTimeoutMs))
    .addOption(durationOption('--body-timeout <duration>', 'a request body must arrive within this (a slow upload is cut off with 408)', defaultListenerLimits.bodyTimeoutMs))
    .addOption(durationOption('--idle-timeout <duration>', 'close kept-alive connections idle this long (keep it above your CDN\'s)', defaultListenerLimits.idleTimeoutMs))
    .addOption(new Option('--max-connections <n>', 'connections open at once on the API port; 0: no limit (default: 16384, at most the open-file limit - 256)').argParser(parseCount))
    .addOption(
      countOption('--max-connections-per-address <n>', 'connections open at once from one client address (IPv6: per /64); 0: no limit (behind a CDN every client shares its addresses)', defaultListenerLimits.maxConnectionsPerAddress),
    )
    .option('--no-peerjs', 'do not run the PeerJS-compatible broker')
    .option('--peerjs-path <path>', 'the PeerJS clients\' `path` (WebSocket at PATHpeerjs, GET PATHKEY/id)', parsePeerjsPath, defaultPeerjsOptions.path)
    .option('--peerjs-key <key>', 'the PeerJS API key clients must send', defaultPeerjsOptions.key)
    .addOption(durationOption('--peerjs-expire-timeout <duration>', 'how long signaling for an absent id waits before EXPIRE', defaultPeerjsOptions.expireTimeoutMs))
    .addOption(durationOption('--peerjs-alive-timeout <duration>', 'close PeerJS clients silent (no HEARTBEAT) this long', defaultPeerjsOptions.aliveTimeoutMs))
    .option('--peerjs-concurrent-limit <n>', 'PeerJS ids connected at once', parsePositiveInt, defaultPeerjsOptions.concurrentLimit)
    .option('--peerjs-allow-discovery', 'answer GET PATHKEY/peers with every connected id')
    .option('--peerjs-require-auth', 'only holders of a ticket (lantern-agent ticket --for peerjs, as the PeerJS token) may register an id')
    .addOption(storeOption())
    .addOption(storeCaOption())
    .option('--store-wait-replicas <n>', 'Redis: answer a write (a send, a device, keys, an account) only once this many replicas have it (WAIT), so a failover loses no answered message', parseCount, 0)
    .option('--no-fsync', 'do not fsync write batches (survives a crash of the process, not of the machine)')
    .option('--log-level <level>', 'log level (stderr)', 'info')
    .addOption(logFormatOption())
    .option('--unsafe-logging', 'keep IP addresses in logs')
    .action(async (flags: ServerFlags, c: Command) =>
      done(await runServer(io, { ...flags, perAddressIsDefault: c.getOptionValueSource('maxConnectionsPerAddress') === 'default' })),
    );
  return withConfigLayers(addFrontOptions(cmd), io, { required: ['--listen', '--data-dir'] });
}

async function runServer(io: Io, flags: ServerFlags): Promise<number> {
  checkCombinations(flags);
  const metricsToken = flags.metricsTokenFile ? await readSecretFile('--metrics-token-file', flags.metricsTokenFile, 'token') : undefined;
  const turnSecret = flags.turnSecretFile ? await readSecretFile('--turn-secret-file', flags.turnSecretFile) : undefined;
  const zone = flags.zone ? checkZone(flags.zone) : undefined;
  const logger = createLogger(logOptions(io, flags));
  const emit = (event: Record<string, unknown>) => flags.json && writeJson(io.stdout, event);
  for (const t of await ensureDataDir(flags.dataDir)) {
    logger.warn({ path: t.path }, tightenedText(t));
    writeLine(io.stderr, `warning: ${tightenedText(t)}`);
  }
  const ca = await loadOrCreateCa(flags.dataDir);
  const tickets = await loadOrCreateTicketIssuer(flags.dataDir);
  const canary = new CanaryMaker(await loadOrCreateCanarySecret(flags.dataDir));
  const addressKey = await loadOrCreateAddressKey(flags.dataDir);
  const tls = await serverTls(flags, ca);
  const spec = await resolveStoreSpec(flags);
  if (flags.storeWaitReplicas > 0 && spec.kind !== 'redis') throw new LanternError('LA_ERR_USAGE', '--store-wait-replicas goes with a redis:// store');
  const { store, notifier } = await openServerStore(spec, flags.dataDir, { fsync: flags.fsync, waitReplicas: flags.storeWaitReplicas });
  // Several instances on Redis are one broker: ids claimed in Redis, frames over pub/sub.
  const directory = flags.peerjs && spec.kind === 'redis' ? new RedisPeerjsDirectory(spec) : undefined;
  const closeStores = async () => {
    await directory?.close();
    await notifier.close();
    await store.close();
  };
  try {
    await directory?.open();
  } catch (err) {
    await closeStores();
    throw err;
  }
  const server = createServer(
    { store, notifier, ...(directory ? { peerjsDirectory: directory } : {}), clock: systemClock, logger, ca, tickets, canary, addressKey, onEvent: (e) => emit(e) },
    serverOptions(flags, { tls, zone, metricsToken, turnSecret, controlSocketPath: flags.store.kind === 'level' ? dataDirPaths(flags.dataDir).control : undefined }),
  );
  try {
    await server.start();
  } catch (err) {
    await closeStores();
    throw err;
  }
  if (!flags.json) writeLine(io.stderr, `lantern-agent server listening on ${server.url}`);
  logger.info({ url: server.url, tls: tls !== undefined }, 'listening');
  const signal = await io.stopSignal;
  emit({ event: 'stopping', signal });
  await server.stop();
  await closeStores();
  emit({ event: 'stopped' });
  logger.flush();
  return 0;
}

/** Flags that go together, or not at all. */
function checkCombinations(flags: ServerFlags): void {
  if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw new LanternError('LA_ERR_USAGE', '--tls-cert and --tls-key go together');
  if (flags.tlsCert && flags.tlsSelfSigned) throw new LanternError('LA_ERR_USAGE', 'use either --tls-cert/--tls-key or --tls-self-signed');
  if (Boolean(flags.dnsListen) !== Boolean(flags.zone)) throw new LanternError('LA_ERR_USAGE', '--dns-listen and --zone go together');
  if (flags.metricsTokenFile && !flags.metricsListen) throw new LanternError('LA_ERR_USAGE', '--metrics-token-file goes with --metrics-listen');
  if (Boolean(flags.turnUrl?.length) !== Boolean(flags.turnSecretFile)) throw new LanternError('LA_ERR_USAGE', '--turn-url and --turn-secret-file go together');
}

/** The DNS zone, normalized; LA_ERR_USAGE for a name that is no DNS name. */
function checkZone(value: string): string {
  const zone = normalizeZone(value);
  if (!/^(?=.{1,200}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(zone)) {
    throw new LanternError('LA_ERR_USAGE', `--zone ${value}: expected a DNS name such as peers.example.org`);
  }
  return zone;
}

/** The API's TLS pair: the operator's files, one signed by the server CA, or none. */
async function serverTls(flags: ServerFlags, ca: Awaited<ReturnType<typeof loadOrCreateCa>>): Promise<{ certificatePem: string; privateKeyPem: string } | undefined> {
  if (flags.tlsCert && flags.tlsKey) {
    try {
      return { certificatePem: await readFile(flags.tlsCert, 'utf8'), privateKeyPem: await readFile(flags.tlsKey, 'utf8') };
    } catch (err) {
      throw new LanternError('LA_ERR_TLS_CONFIG', `Cannot read TLS files: ${(err as Error).message}`, { cause: err });
    }
  }
  if (flags.tlsSelfSigned) return loadOrCreateSelfSignedTls(flags.dataDir, ca, [flags.listen.host, 'localhost', '127.0.0.1', '::1']);
  return undefined;
}

/** The flags as the server role's options. */
function serverOptions(
  flags: ServerFlags,
  more: { tls: { certificatePem: string; privateKeyPem: string } | undefined; zone: string | undefined; metricsToken: string | undefined; turnSecret?: string | undefined; controlSocketPath: string | undefined },
): ServerRoleOptions {
  const api: ServerOptions = {
    openRegistration: flags.openRegistration === true,
    retentionMs: flags.retention,
    expireIntervalMs: flags.expireInterval,
    queue: { maxMessages: flags.queueMaxMessages, maxBytes: flags.queueMaxBytes },
    queueSenderShare: flags.queueSenderShare,
    dormantAfterMs: flags.dormantAfter,
    rate: {
      pair: flags.ratePair,
      recipientBytes: flags.rateRecipientBytes,
      loginPerAddress: flags.rateLoginAddress,
      loginPerAccount: flags.rateLoginAccount,
      loginPerAccountTotal: flags.rateLoginAccountTotal,
      prekeyFetch: flags.ratePrekeyFetch,
      prekeyTarget: flags.ratePrekeyTarget,
      peerReport: flags.ratePeerReport,
      reachability: flags.rateReachability,
    },
    certificateLifetimeMs: flags.certLifetime,
    sessionLifetimeMs: flags.sessionLifetime,
    sessionsPerDevice: flags.sessionsPerDevice,
    ticketLifetimeMs: flags.ticketLifetime,
    peerTtlMs: flags.peerTtl,
    peerPauseAfterMs: flags.peerPauseAfter,
    verdictTtlMs: flags.verdictTtl,
    verifierQuorum: flags.verifierQuorum,
    maxPollWaitSeconds: MAX_POLL_WAIT_SECONDS,
    canaryOrigins: flags.canaryOrigin,
    ice: { stunUrls: flags.stunUrl ?? [], turnUrls: flags.turnUrl ?? [], ...(more.turnSecret ? { turnSecret: more.turnSecret } : {}), turnTtlMs: flags.turnTtl },
    clientAddress: { trustProxy: flags.trustProxy, header: flags.clientAddressHeader, prefix: { v4: flags.ipv4Prefix, v6: flags.ipv6Prefix } },
  };
  return {
    api,
    listen: {
      host: flags.listen.host,
      port: flags.listen.port,
      ...(more.tls ? { tls: more.tls } : {}),
      ...(more.controlSocketPath ? { controlSocketPath: more.controlSocketPath } : {}),
      limits: {
        headerTimeoutMs: flags.headerTimeout,
        bodyTimeoutMs: flags.bodyTimeout,
        idleTimeoutMs: flags.idleTimeout,
        ...listenerCaps({
          total: flags.maxConnections,
          defaultTotal: defaultListenerLimits.maxConnections,
          perAddress: flags.maxConnectionsPerAddress,
          perAddressIsDefault: flags.perAddressIsDefault === true,
        }),
      },
    },
    ...(flags.peerjs
      ? {
          peerjs: {
            ...defaultPeerjsOptions,
            path: flags.peerjsPath,
            key: flags.peerjsKey,
            expireTimeoutMs: flags.peerjsExpireTimeout,
            aliveTimeoutMs: flags.peerjsAliveTimeout,
            concurrentLimit: flags.peerjsConcurrentLimit,
            allowDiscovery: flags.peerjsAllowDiscovery === true,
            requireAuth: flags.peerjsRequireAuth === true,
          },
        }
      : {}),
    ...(flags.dnsListen && more.zone ? { dns: { host: flags.dnsListen.host, port: flags.dnsListen.port, zone: more.zone, ttlSeconds: Math.round(flags.dnsTtl / 1000), ratePerSecond: flags.dnsRate } } : {}),
    ...(flags.stunListen ? { stun: { host: flags.stunListen.host, port: flags.stunListen.port, ratePerSecond: flags.stunRate } } : {}),
    ...(flags.metricsListen ? { metrics: { ...flags.metricsListen, ...(more.metricsToken ? { token: more.metricsToken } : {}) } } : {}),
    minRotation: flags.minRotation,
  };
}

/** `--stun-url` / `--turn-url` values: an ICE server URL of that kind (RFC 7064, 7065). */
function parseIceUrl(kind: 'stun' | 'turn'): (value: string, previous?: string[]) => string[] {
  return (value, previous = []) => {
    if (!new RegExp(`^${kind}s?:(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9.-]+)(:\\d{1,5})?(\\?transport=(udp|tcp))?$`).test(value)) {
      throw new LanternError('LA_ERR_USAGE', `--${kind}-url ${value}: expected ${kind}:HOST:PORT${kind === 'turn' ? '[?transport=udp|tcp] (or turns:)' : ''}`);
    }
    return [...previous, value];
  };
}

/** A secret (the bearer token of /metrics, the TURN secret) from a file's first line, at least 16 characters. */
async function readSecretFile(flag: string, file: string, what = 'secret'): Promise<string> {
  let secret: string;
  try {
    secret = (await readFile(file, 'utf8')).split('\n')[0]!.trim();
  } catch (err) {
    throw new LanternError('LA_ERR_CONFIG', `Cannot read ${flag}: ${(err as Error).message}`, { cause: err });
  }
  if (secret.length < 16) throw new LanternError('LA_ERR_CONFIG', `${flag} must hold a ${what} of at least 16 characters`);
  return secret;
}

