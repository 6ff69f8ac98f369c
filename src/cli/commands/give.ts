import { join } from 'node:path';
import { Command, Option } from 'commander';
import { LanternError } from '../../core/errors.js';
import { ControlSocketServer, controlRequest } from '../../net/control-socket.js';
import { GiveControlRequest, type Advertisement, type PeerInfo, type ReachabilityResponse } from '../../protocol/messages.js';
import { parseMessage } from '../../protocol/validate.js';
import { systemClock } from '../../core/clock.js';
import { createLogger, type Logger } from '../../core/logger.js';
import { releaseStackLog } from '../../net/ice/stack-log.js';
import { defaultGiveLimits } from '../../roles/give/give-proxy.js';
import { createGive, type GiveEvent, type AdReport, type GiveOptions, type IceStatus } from '../../roles/give/index.js';
import { PORT_MAPPING_CHOICES, type PortMappingChoice, type PortMappingStatus } from '../../net/port-mapping/index.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import { listenerCaps } from '../fd-limit.js';
import { Messenger } from '../../messaging/messenger.js';
import { openAgent, requireCredential, signedClient, withApi, withKeystore } from '../agent-home.js';
import { hasSignalIdentity, iceSignaling, receiveBatch, withInbox } from '../home-messaging.js';
import { countOption, durationOption, parseCount, parseListen, parsePort, parsePositiveInt, resolveHome, logFormatOption } from '../config.js';
import { withConfigLayers } from '../config-layers.js';
import { writeJson, writeLine, logOptions, type Io } from '../io.js';
import { growHeapInLargeSteps } from '../../core/malloc-tuning.js';

interface GiveFlags {
  listen?: { host: string; port: number };
  pause?: boolean;
  resume?: boolean;
  home?: string;
  allowPrivateDestinations?: boolean;
  maxClients: number;
  maxMbps?: number;
  publicAddr?: string;
  publicPort?: number;
  portMapping: PortMappingChoice;
  portMappingLease: number;
  ice: 'auto' | 'always' | 'off';
  register: boolean;
  advertiseTo?: string[];
  adLifetime: number;
  json?: boolean;
  plaintext?: boolean;
  sniName?: string;
  handshakeTimeout: number;
  keepaliveTimeout: number;
  idleTimeout: number;
  maxConnections?: number;
  maxConnectionsPerAddress: number;
  /** Whether --max-connections-per-address was left at its default (then it is at most a quarter of the total). */
  perAddressIsDefault?: boolean;
  logLevel: string;
  unsafeLogging?: boolean;
}

export function giveCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('give')
    .description('Share this connection: a proxy (HTTP CONNECT, HTTP forward, SOCKS5) for holders of server tickets')
    .option('--listen <host:port>', 'address to listen on (port 0 picks a free port)', parseListen)
    .option('--pause', 'pause the give peer running on this home (leaves the registry, refuses clients)')
    .option('--resume', 'resume the paused give peer running on this home')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); must be logged in')
    .option('--allow-private-destinations', 'also connect to private, loopback and link-local addresses (tests, demos)')
    .option('--plaintext', 'no TLS on the port (LOCAL TESTS ONLY: tickets, destinations and pages then cross the network in clear, and verifiers never admit the peer)')
    .option('--sni-name <name>', 'a DNS name of this peer: its certificate names it and clients send it in TLS SNI (default: none, as for an IP address)')
    .option('--max-clients <n>', 'tunnels and requests served at once', parsePositiveInt, 64)
    .option('--max-mbps <n>', 'shared bandwidth cap in megabits per second', parsePositiveInt)
    .option('--public-addr <host:port>', 'how the world reaches this proxy (a hint: the server uses the connection address)')
    .option('--public-port <n>', 'the port the world reaches this proxy on, when a router forwards another port to it', parsePort)
    .addOption(new Option('--port-mapping <method>', 'open the port on the home router: auto (PCP or NAT-PMP, then UPnP-IGD), upnp, pcp, or off; never with --public-port').choices(PORT_MAPPING_CHOICES).default('auto'))
    .addOption(durationOption('--port-mapping-lease <duration>', 'the lease asked of the router, renewed at half its life', 3600_000))
    .addOption(
      new Option('--ice <mode>', 'reach clients over WebRTC (ICE, TURN as a last resort), signaled by end-to-end encrypted messages: auto (when the server cannot reach this peer and no port is mapped), always, or off')
        .choices(['auto', 'always', 'off'])
        .default('auto'),
    )
    .option('--no-register', 'do not register with the server (serve only peers that were told the address)')
    .option('--advertise-to <userIds...>', "send an availability ad to these users (store-and-forward, end-to-end encrypted)")
    .addOption(durationOption('--ad-lifetime <duration>', 'how long ads stay valid', 3600_000))
    .addOption(durationOption('--handshake-timeout <duration>', 'first bytes, and each handshake step, within this; else closed as nginx closes (client_header_timeout)', defaultGiveLimits.handshakeTimeoutMs))
    .addOption(durationOption('--keepalive-timeout <duration>', 'close a kept-alive forward-proxy connection idle this long (nginx keepalive_timeout)', defaultGiveLimits.keepAliveTimeoutMs))
    .addOption(durationOption('--idle-timeout <duration>', 'close a tunnel or forwarded request with no byte either way this long', defaultGiveLimits.idleTimeoutMs))
    .addOption(new Option('--max-connections <n>', 'connections open at once; 0: no limit (default: 1024, at most (open-file limit - 256) / 2)').argParser(parseCount))
    .addOption(countOption('--max-connections-per-address <n>', 'connections open at once from one address (IPv6: per /64); 0: no limit', defaultGiveLimits.maxConnectionsPerAddress))
    .option('--json', 'print NDJSON events on stdout')
    .option('--log-level <level>', 'log level (stderr)', 'info')
    .addOption(logFormatOption())
    .option('--unsafe-logging', 'keep IP addresses in logs')
    .action(async (flags: GiveFlags, c: Command) =>
      done(await runGive(io, { ...flags, perAddressIsDefault: c.getOptionValueSource('maxConnectionsPerAddress') === 'default' }).finally(releaseStackLog)),
    );
  return withConfigLayers(cmd, io);
}

/** The control socket of a give peer running on a home. */
export const giveSocketPath = (home: string) => join(home, 'give.sock');

async function runGive(io: Io, flags: GiveFlags): Promise<number> {
  // A proxy: old-generation limits that relaying cannot outrun (see malloc-tuning.ts).
  growHeapInLargeSteps();
  const home = resolveHome(flags.home, io.env);
  if (flags.pause || flags.resume) {
    if (flags.pause && flags.resume) throw new LanternError('LA_ERR_USAGE', 'use --pause or --resume');
    const result = await controlRequest(giveSocketPath(home), { op: flags.pause ? 'pause' : 'resume' });
    if (!result) throw new LanternError('LA_ERR_USAGE', 'no give peer runs on this home');
    if (flags.json) writeJson(io.stdout, result);
    else writeLine(io.stdout, `give peer ${result['paused'] ? 'paused' : 'resumed'}`);
    return 0;
  }
  if (!flags.listen) throw new LanternError('LA_ERR_USAGE', '--listen HOST:PORT is required to run a give peer');
  const listenAt = flags.listen;
  const logger = createLogger(logOptions(io, flags)).child({ component: 'give' });
  const faults = new FaultBoundary({ logger });
  // The credential is read once; the keystore is not held, so other commands keep using the home.
  const credential = await withKeystore(home, requireCredential);
  const api = await signedClient(credential);
  const emit = (event: Record<string, unknown>) => flags.json && writeJson(io.stdout, event);
  const give = createGive(
    {
      api,
      clock: systemClock,
      logger,
      faults,
      // Tickets come from the server this home is logged in to, and are then checked offline.
      ticketKey: await api.ticketKey(),
      advertise: (ad, userIds) => advertise(home, ad, userIds, logger),
      // Offers from clients, when this peer is reached over WebRTC, come as end-to-end encrypted messages.
      ...((await hasSignalIdentity(home))
        ? {
            signaling: iceSignaling(home, credential, logger),
            receive: receiveBatch(home, credential, logger),
            topUpKeys: () => withInbox(home, credential, logger, (inbox) => inbox.topUp()),
            self: { userId: credential.userId, deviceId: credential.deviceId },
          }
        : {}),
      onEvent: (e) => {
        if (e.event === 'registered' || e.event === 'changed') emit({ event: e.event, ...e.registration });
        else if (e.event === 'advertised') emit({ event: 'advertised', ...e.report });
        else if (e.event === 'reachability') emit({ event: 'reachability', ...e.reachability });
        else if (e.event === 'port-mapping') emit({ event: 'port-mapping', ...e.portMapping });
        else if (e.event === 'ice') emit({ event: 'ice', ...e.ice });
        if (!flags.json && e.event !== 'listening' && !(e.event === 'port-mapping' && QUIET_MAPPING.has(e.portMapping.method === null ? e.portMapping.reason : ''))) writeLine(io.stderr, `lantern-agent give: ${giveEventLine(e)}`);
        if (e.event === 'listening') {
          emit({ event: 'listening', url: give.url, ...give.peer });
          if (!flags.json) writeLine(io.stderr, `lantern-agent give: proxy listening on ${give.url} (${give.peer.tls ? 'TLS' : 'PLAINTEXT: local tests only'}; fingerprint ${give.peer.fingerprint})`);
        }
      },
    },
    giveOptions(flags, listenAt),
  );
  try {
    await give.start();
  } catch (err) {
    await api.close();
    throw err;
  }
  // `status` and `give --pause|--resume` reach this process through a socket in the home.
  const control = new ControlSocketServer({ logger, faults }, giveSocketPath(home), async (value) => {
    const { op } = parseMessage(GiveControlRequest, value);
    if (op !== 'status') await give.setPaused(op === 'pause');
    return give.status();
  });
  await control.start();
  const signal = await io.stopSignal;
  emit({ event: 'stopping', signal });
  await control.stop();
  await give.stop();
  await api.close();
  emit({ event: 'stopped', ...give.stats() });
  return 0;
}

/** The flags as the give role's options. */
function giveOptions(flags: GiveFlags, listenAt: { host: string; port: number }): GiveOptions {
  return {
    host: listenAt.host,
    port: listenAt.port,
    plaintext: flags.plaintext === true,
    ...(flags.sniName ? { sniName: flags.sniName } : {}),
    limits: {
      handshakeTimeoutMs: flags.handshakeTimeout,
      keepAliveTimeoutMs: flags.keepaliveTimeout,
      idleTimeoutMs: flags.idleTimeout,
      // Each tunnel holds two descriptors: the client's and the destination's.
      ...listenerCaps({
        total: flags.maxConnections,
        defaultTotal: defaultGiveLimits.maxConnections,
        perConnection: 2,
        perAddress: flags.maxConnectionsPerAddress,
        perAddressIsDefault: flags.perAddressIsDefault === true,
      }),
    },
    allowPrivateDestinations: flags.allowPrivateDestinations === true,
    maxClients: flags.maxClients,
    ...(flags.maxMbps ? { maxMbps: flags.maxMbps } : {}),
    register: flags.register,
    ...(flags.publicPort ? { publicPort: flags.publicPort } : {}),
    ...(flags.publicAddr ? { publicAddr: flags.publicAddr } : {}),
    portMapping: { method: flags.portMapping, leaseSeconds: Math.max(1, Math.round(flags.portMappingLease / 1000)) },
    ice: flags.ice,
    advertiseTo: flags.advertiseTo ?? [],
    adLifetimeMs: flags.adLifetime,
  };
}

/**
 * Sends an availability ad to each user, end-to-end encrypted and stored by the server until they
 * come online. The keystore is held only while the ads are encrypted and sent.
 */
async function advertise(home: string, ad: Advertisement, userIds: readonly string[], logger: Logger): Promise<AdReport> {
  const sentTo: string[] = [];
  const failed: Array<{ userId: string; code: string }> = [];
  await withKeystore(home, async (keystore) => {
    const credential = await requireCredential(keystore);
    const { api, cipher } = await openAgent(keystore, credential);
    try {
      if (!cipher) throw new LanternError('LA_ERR_NOT_LOGGED_IN', 'This home has no Signal identity; run `lantern-agent login` again');
      const messenger = new Messenger({ api, keystore, cipher, logger }, { userId: credential.userId, deviceId: credential.deviceId });
      for (const userId of userIds) {
        try {
          await messenger.sendEnvelope(userId, { v: 1, ad }, { copyToOwnDevices: false });
          sentTo.push(userId);
        } catch (err) {
          failed.push({ userId, code: LanternError.is(err) ? err.code : 'LA_ERR_INTERNAL' });
          logger.warn({ code: LanternError.is(err) ? err.code : undefined }, 'could not send an availability ad');
        }
      }
    } finally {
      await api.close();
    }
  });
  return { sentTo, failed };
}

export function ticketCommand(io: Io, done: (code: number) => void): Command {
  return new Command('ticket')
    .description('Get a short-lived ticket from the server: for one give peer (e.g. curl --proxy https://PEER --proxy-insecure --proxy-user ticket:TICKET), or for the PeerJS broker')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .addOption(new Option('--for <use>', 'proxy (a give peer) or peerjs (registering an id with the PeerJS broker)').choices(['proxy', 'peerjs']).default('proxy'))
    .option('--peer <fingerprint>', 'the give peer the ticket opens (its fingerprint, as `give` and `status` print it); required for --for proxy')
    .option('--json', 'print JSON {ticket, expiresAt}')
    .action(async (flags: { home?: string; json?: boolean; for: 'proxy' | 'peerjs'; peer?: string }) => {
      if (flags.for === 'proxy' && !flags.peer) throw new LanternError('LA_ERR_USAGE', 'a proxy ticket opens one give peer: pass --peer FINGERPRINT');
      const request = flags.for === 'peerjs' ? { aud: 'peerjs' as const } : { peer: flags.peer! };
      const answer = await withApi(resolveHome(flags.home, io.env), (api) => api.ticket(request));
      if (flags.json) writeJson(io.stdout, { ticket: answer.ticket, expiresAt: new Date(answer.expiresAt).toISOString() });
      else writeLine(io.stdout, answer.ticket);
      done(0);
    });
}

export function statusCommand(io: Io, done: (code: number) => void): Command {
  return new Command('status')
    .description('Is my proxy reachable and used? Asks the give peer running on this home')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      const result = (await controlRequest(giveSocketPath(resolveHome(flags.home, io.env)), { op: 'status' })) ?? { role: null, running: false };
      if (flags.json) writeJson(io.stdout, result);
      else if (result['role'] !== 'give') writeLine(io.stdout, 'no give peer runs on this home');
      else {
        const reg = result['registration'] as { state: string; host: string; port: number } | null;
        writeLine(
          io.stdout,
          `give peer at ${String(result['url'])} (fingerprint ${String(result['fingerprint'])})${result['paused'] ? ' (PAUSED)' : ''}: ${reg ? `registered as ${reg.host}:${reg.port}, ${reg.state}` : 'not registered'}; ` +
            `${String(result['activeTunnels'])} active tunnel(s), ${String(result['tunnelsServed'])} served, ${String(result['bytesRelayed'])} bytes relayed` +
            (Number(result['overCapacity']) > 0 ? `; ${String(result['overCapacity'])} connection(s) over the caps closed` : '') +
            (Number(result['faults']) > 0 ? `; ${String(result['faults'])} fault(s) contained (see the log)` : ''),
        );
        const mapping = result['portMapping'] as PortMappingStatus | null;
        if (mapping && !QUIET_MAPPING.has(mapping.method === null ? mapping.reason : '')) writeLine(io.stdout, portMappingLine(mapping));
        const reach = result['reachability'] as ReachabilityResponse | null;
        const ice = result['ice'] as IceStatus | null;
        if (reg && reach && !(ice && !reach.reachable)) writeLine(io.stdout, `${reachabilityLine(reach)} (checked ${new Date(reach.at).toISOString()})`);
        if (ice) writeLine(io.stdout, iceLine(ice));
        const verdict = result['lastVerdict'] as PeerInfo['lastVerdict'] | null;
        if (reg && verdict) writeLine(io.stdout, `last verdict ${new Date(verdict.at).toISOString()}: ${verdict.ok ? 'pass' : 'FAIL'} (${verdict.status})${!verdict.ok && VERDICT_HINTS[verdict.status] ? ` — ${VERDICT_HINTS[verdict.status]}` : ''}`);
        else if (reg) writeLine(io.stdout, 'no verdict yet: a verifier has not probed this peer');
      }
      done(0);
    });
}

/** What a verdict's status asks of the person running the give peer. */
const VERDICT_HINTS: Record<string, string> = {
  'destination-refused': 'the server is on a private address, which this peer refuses to reach; for local tests run give with --allow-private-destinations',
  refused: 'nothing accepts connections at that address: is the port forwarded to this machine (--public-port), or a firewall in the way?',
  timeout: 'the verifier got no answer at that address: forward the port on your router (--public-port) or open the firewall',
  unreachable: 'the verifier cannot route to that address: check --public-addr and the router',
  'tls-failed': 'something else answers at that address (another program, or a router forwarding the port elsewhere)',
  'identity-mismatch': 'another give peer answers at that address (a router forwarding the port elsewhere?)',
  slow: 'the first byte came too late: a slow or busy connection',
  'low-throughput': 'too few bytes a second came through: a slow connection, or --max-mbps set too low',
  plaintext: 'a peer started with --plaintext is never verified',
};

/** One human line for a give event: what the server now thinks of this peer, and what to do. */
export function giveEventLine(e: Exclude<GiveEvent, { event: 'listening' }>): string {
  if (e.event === 'advertised') {
    const failed = e.report.failed.map((f) => `${f.userId} (${f.code})`).join(', ');
    return `availability ad sent to ${e.report.sentTo.length} user(s)${failed ? `; not to ${failed}` : ''}`;
  }
  if (e.event === 'reachability') return reachabilityLine(e.reachability);
  if (e.event === 'port-mapping') return portMappingLine(e.portMapping);
  if (e.event === 'ice') return iceLine(e.ice);
  const r = e.registration;
  const where = r.ice ? `${r.host} (over WebRTC)` : `${r.host}:${r.port}`;
  if (e.event === 'registered' && !r.lastVerdict) {
    return `registered as ${where} (peer ${r.peerId}); a candidate until a verifier passes it: get clients use only verified peers (or a contact's ad)`;
  }
  const v = r.lastVerdict;
  if (r.state === 'verified') return `verified: in the round robin at ${where}${v?.latencyMs !== undefined ? ` (first byte in ${v.latencyMs} ms)` : ''}`;
  if (r.state === 'paused') return `paused by the server after failing verification for too long; restart give to register again${v ? ` (last: ${v.status})` : ''}`;
  if (v && !v.ok) return `not verified at ${where}: ${v.status}${VERDICT_HINTS[v.status] ? ` — ${VERDICT_HINTS[v.status]}` : ''}`;
  return `${r.state} at ${where}`;
}

/** Port-mapping outcomes not worth a line: mapping off, or a proxy on loopback or a public address. */
const QUIET_MAPPING = new Set(['off', 'not-needed']);

const MAPPING_METHODS = { upnp: 'UPnP-IGD', pcp: 'PCP', 'nat-pmp': 'NAT-PMP' } as const;

/** What the home router did for this peer, and what to do when it did nothing. */
export function portMappingLine(m: PortMappingStatus): string {
  if (m.method) {
    const lease = m.lifetimeSeconds > 0 ? `lease ${m.lifetimeSeconds} s, renewed at half` : 'permanent lease, removed at stop';
    return `port mapped: router ${m.gateway} forwards ${m.externalHost}:${m.externalPort} to this proxy (${MAPPING_METHODS[m.method]}, ${lease})`;
  }
  const hint = 'get clients reach this peer only if its address is public or a port is forwarded by hand (--public-port)';
  if (m.reason === 'no-answer') return `no port mapping: the router answered neither PCP/NAT-PMP nor UPnP (enable UPnP on the router, or forward the port by hand); ${hint}`;
  if (m.reason === 'refused') return `no port mapping: the router refused (${m.detail ?? 'no reason given'}); ${hint}`;
  if (m.reason === 'no-gateway') return `no port mapping: this machine has no default route; ${hint}`;
  return `no port mapping (${m.reason})`;
}

/** How clients reach this peer over WebRTC, and why. */
export function iceLine(ice: IceStatus): string {
  const why = ice.reason === 'always' ? '--ice always' : 'the server could not reach this peer and no port is mapped';
  const up = ice.connections ? `; ${ice.connections} client connection(s) up (${ice.paths.ice} direct between the NATs, ${ice.paths.turn} through the TURN relay)` : '';
  return `clients reach this peer over WebRTC (${why}): offers come end-to-end encrypted through the server, which relays over TURN only when no direct path works${up}`;
}

/** What the server found when it dialed this peer, and what to do if it could not reach it. */
function reachabilityLine(r: ReachabilityResponse): string {
  const where = `${r.host}:${r.port}`;
  if (r.reachable) return `reachable: the server reached ${where} (TLS in ${r.ms ?? '?'} ms), so get clients will connect to it directly`;
  return `NOT reachable: the server could not reach ${where} (${r.status})${VERDICT_HINTS[r.status] ? ` — ${VERDICT_HINTS[r.status]}` : ''}`;
}
