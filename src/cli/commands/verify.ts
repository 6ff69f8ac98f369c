import { Command } from 'commander';
import { createLogger } from '../../core/logger.js';
import { Verifier, type VerdictReport } from '../../roles/verify/verifier.js';
import { withApi } from '../agent-home.js';
import { parseDuration, parsePositiveInt, resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

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
}

export function verifyCommand(io: Io, done: (code: number) => void): Command {
  return new Command('verify')
    .description('Verify give peers end to end (as a get client would) and admit or evict them (verifier accounts)')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent); a verifier account')
    .option('--once', 'one pass, a summary, then exit')
    .option('--interval <duration>', 'time between passes', parseDuration, 15_000)
    .option('--concurrency <n>', 'peers probed at once', parsePositiveInt, 8)
    .option('--timeout <duration>', 'per-step timeout', parseDuration, 5000)
    .option('--max-latency <duration>', 'latency ceiling for the canary', parseDuration, 2000)
    .option('--min-mbps <n>', 'throughput floor for the canary (Mbit/s)', Number, 0.1)
    .option('--json', 'one verdict per line (NDJSON)')
    .option('--log-level <level>', 'log level (stderr, JSON)', 'warn')
    .action(async (flags: VerifyFlags) => {
      const logger = createLogger({ level: flags.logLevel }).child({ component: 'verify' });
      await withApi(resolveHome(flags.home, io.env), async (api, credential) => {
        const server = new URL(credential.server);
        const verifier = new Verifier(
          { api, logger },
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
          },
        );
        const show = (r: VerdictReport) => {
          if (flags.json) writeJson(io.stdout, r);
          else writeLine(io.stderr, `${r.ok ? 'pass' : 'FAIL'} ${r.host}:${r.port} ${r.status}${r.latencyMs !== undefined ? ` ${r.latencyMs} ms` : ''} -> ${r.state}`);
        };
        if (flags.once) {
          const reports = await verifier.pass(show);
          const passed = reports.filter((r) => r.ok).length;
          if (!flags.json) writeLine(io.stdout, `verified ${reports.length} peer(s): ${passed} passed, ${reports.length - passed} failed`);
        } else {
          const stop = io.stopSignal.then(() => true);
          for (;;) {
            await verifier.pass(show).catch((err: unknown) => logger.warn({ err }, 'pass failed'));
            if (await Promise.race([stop, new Promise<false>((r) => setTimeout(() => r(false), flags.interval))])) break;
          }
        }
      });
      done(0);
    });
}
