import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level?: string;
  /** Keep IP addresses in logs. Off by default: logs of a circumvention tool must not identify users. */
  unsafeLogging?: boolean;
  destination?: DestinationStream;
}

const IPV4 = /\b(?:\d{1,3}\.){3}\d{1,3}\b/g;
// Runs of hex groups separated by colons with at least two colons: IPv6 literals (also "::1").
const IPV6 = /(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])/gi;

/** Replaces IPv4 and IPv6 literals in a string. */
export function scrubAddresses(text: string): string {
  // An IPv6 literal has eight groups, or fewer with one "::" (so "12:30:45" is a time, not an address).
  return text
    .replace(IPV4, '[addr]')
    .replace(IPV6, (m) => (m.includes('::') || m.split(':').length === 8 ? '[addr]' : m));
}

function scrubValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return scrubAddresses(value);
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrubValue(v, depth + 1));
  if (value instanceof Error) return { type: value.name, message: scrubAddresses(value.message), code: (value as { code?: unknown }).code };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubValue(v, depth + 1);
  return out;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/**
 * Log lines for a person at a terminal: `14:03:07 WARN give: heartbeat failed code=…`, local
 * time, the fields after the message. A line that is not pino's JSON is passed on as it is.
 */
export function prettyDestination(write: (text: string) => void): DestinationStream {
  return {
    write(line: string) {
      try {
        const { level, time, msg, component, ...rest } = JSON.parse(line) as Record<string, unknown>;
        const when = new Date(Number(time)).toTimeString().slice(0, 8);
        const fields = Object.entries(rest)
          .map(([k, v]) => ` ${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join('');
        write(`${when} ${LEVEL_NAMES[Number(level)] ?? String(level)} ${component ? `${String(component)}: ` : ''}${String(msg ?? '')}${fields}\n`);
      } catch {
        write(line);
      }
    },
  };
}

/** JSON logs on stderr (or `destination`), addresses scrubbed unless `unsafeLogging`. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const unsafe = options.unsafeLogging === true;
  return pino(
    {
      level: options.level ?? 'info',
      base: undefined,
      formatters: unsafe ? {} : { log: (obj) => scrubValue(obj) as Record<string, unknown> },
      hooks: unsafe
        ? {}
        : {
            logMethod(args, method) {
              const scrubbed = args.map((a) => (typeof a === 'string' ? scrubAddresses(a) : a)) as Parameters<typeof method>;
              method.apply(this, scrubbed);
            },
          },
    },
    options.destination ?? pino.destination({ fd: 2, sync: false }),
  );
}

/** A logger that drops everything, for library use and tests. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
