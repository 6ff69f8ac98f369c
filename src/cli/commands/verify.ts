import { Command } from 'commander';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { releaseStackLog } from '../../net/ice/stack-log.js';
import { systemClock } from '../../core/clock.js';
import { createVerify } from '../../roles/verify/index.js';
import type { VerdictReport } from '../../roles/verify/verifier.js';
import { withApi } from '../agent-home.js';
import { hasSignalIdentity, iceSignaling, receiveBatch, withInbox } from '../home-messaging.js';
import { durationOption, parsePositiveInt, resolveHome, logFormatOption } from '../config.js';
import { withConfigLayers } from '../config-layers.js';
import { isTerminal, writeJson, writeLine, logOptions, type Io } from '../io.js';

interface VerifyFlags {
  home?: string;
  once?: boolean;
  interval: number;
  concurrency: number;
  timeout: number;
  maxLatency: number;
  minMbps: number;
  json?: boolean;
  logLevel: string;
  dns?: string;
  zone?: string;
}

export function verifyCommand(io: Io, done: (code: number) => void): Command {
  const cmd = new Command('verify')
    .description('Verify give peers end to end (as a get client would) and admit or evict them (verifier accounts)')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); a verifier account')
    .option('--once', 'one pass, a summary, then exit')
    .addOption(durationOption('--interval <duration>', 'time between passes', 15_000))
    .option('--concurrency <n>', 'peers probed at once', parsePositiveInt, 8)
    .addOption(durationOption('--timeout <duration>', 'per-step timeout', 5000))
    .addOption(durationOption('--max-latency <duration>', 'latency ceiling for the canary', 2000))
    .option('--min-mbps <n>', 'throughput floor for the canary (Mbit/s)', Number, 0.1)
    .option('--dns <host:port>', "resolve each peer's name (<peer-id>.peers.ZONE) from this DNS server first (the server's --dns-listen); a wrong or missing answer fails the peer")
    .option('--zone <zone>', 'the zone of --dns (the server\'s --zone)')
    .option('--json', 'one verdict per line (NDJSON)')
    .option('--log-level <level>', 'log level (stderr)', 'warn')
    .addOption(logFormatOption())
    .action(async (flags: VerifyFlags) => {
      if ((flags.dns === undefined) !== (flags.zone === undefined)) throw new LanternError('LA_ERR_USAGE', '--dns and --zone go together');
      if (flags.dns !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(flags.dns)) throw new LanternError('LA_ERR_USAGE', `--dns ${flags.dns}: expected HOST:PORT`);
      const logger = createLogger(logOptions(io, flags)).child({ component: 'verify' });
      await withApi(resolveHome(flags.home, io.env), async (api, credential): Promise<number> => {
        const server = new URL(credential.server);
        const line = (r: VerdictReport) =>
          `${r.ok ? 'pass' : 'FAIL'} ${r.peerId.slice(0, 8)} ${r.host}:${r.port}${r.path && r.path !== 'direct' ? ` (${PATH_TEXT[r.path]})` : ''} ${r.status}${r.latencyMs !== undefined ? ` ${r.latencyMs} ms` : ''} -> ${r.state}`;
        // On a terminal, --once redraws one progress line in place, failures kept above it;
        // otherwise a line per verdict.
        const progress = flags.once === true && !flags.json && isTerminal(io.stderr);
        let total = 0;
        let seen = 0;
        let failed = 0;
        const home = resolveHome(flags.home, io.env);
        const verify = createVerify(
          {
            api,
            clock: systemClock,
            logger,
            // Peers behind a NAT are verified over WebRTC, signaled by end-to-end encrypted messages.
            ...((await hasSignalIdentity(home))
              ? { signaling: iceSignaling(home, credential, logger), receive: receiveBatch(home, credential, logger), topUpKeys: () => withInbox(home, credential, logger, (inbox) => inbox.topUp()) }
              : {}),
            onVerdict: (r) => {
              seen++;
              if (!r.ok) failed++;
              if (flags.json) writeJson(io.stdout, r);
              else if (!progress) writeLine(io.stderr, line(r));
              else io.stderr.write(`\r\x1b[K${r.ok ? '' : `${line(r)}\n`}[${seen}/${total}] ${seen - failed} passed, ${failed} failed`);
            },
          },
          {
            server: {
              host: server.hostname.replace(/^\[|\]$/g, ''),
              port: Number(server.port || (server.protocol === 'https:' ? 443 : 80)),
              tls: server.protocol === 'https:',
              ...(credential.tlsCaPem ? { ca: credential.tlsCaPem } : {}),
            },
            concurrency: flags.concurrency,
            timeoutMs: flags.timeout,
            maxLatencyMs: flags.maxLatency,
            minMbps: flags.minMbps,
            intervalMs: flags.interval,
            ...(flags.dns ? { dns: { server: flags.dns, zone: flags.zone! } } : {}),
          },
        );
        if (flags.once) {
          const reports = await verify.once((n) => {
            total = n;
            if (progress) io.stderr.write(`verifying ${n} peer(s)…`);
          });
          if (progress) io.stderr.write('\n');
          if (!flags.json) writeLine(io.stdout, summarize(reports));
          // A script running `verify --once` learns from the exit code whether every peer passed.
          return reports.every((r) => r.ok) ? 0 : 1;
        }
        await verify.start();
        await io.stopSignal;
        await verify.stop();
        return 0;
      })
        .finally(releaseStackLog)
        .then(done);
    });
  return withConfigLayers(cmd, io);
}

/** How a probe reached a peer behind a NAT. */
const PATH_TEXT = { ice: 'over WebRTC', turn: 'over WebRTC via TURN' } as const;

/** "verified 5 peer(s): 3 passed, 2 failed (refused 1, identity-mismatch 1); median latency 4.2 ms" */
export function summarize(reports: readonly VerdictReport[]): string {
  const passed = reports.filter((r) => r.ok);
  const reasons = new Map<string, number>();
  for (const r of reports) if (!r.ok) reasons.set(r.status, (reasons.get(r.status) ?? 0) + 1);
  const why = reasons.size ? ` (${[...reasons].map(([k, n]) => `${k} ${n}`).join(', ')})` : '';
  const latencies = passed.map((r) => r.latencyMs ?? 0).sort((a, b) => a - b);
  const median = latencies.length ? `; median latency ${latencies[Math.floor(latencies.length / 2)]} ms` : '';
  return `verified ${reports.length} peer(s): ${passed.length} passed, ${reports.length - passed.length} failed${why}${median}`;
}
