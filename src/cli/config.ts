import { homedir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, Option } from 'commander';
import { parseHostPort } from '../net/listen.js';
import type { BucketPolicy } from '../storage/server-store.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };

/** "30d", "2s", "1500ms", "10m", "1h" -> milliseconds; a bare number is seconds ("30" is 30 s). */
export function parseDuration(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a duration such as 500ms, 30s (or 30), 10m, 12h or 30d');
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

/** Milliseconds as the shortest duration text parseDuration reads back ("60s", "10m", "1500ms"). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms >= UNITS[unit]! && ms % UNITS[unit]! === 0) return `${ms / UNITS[unit]!}${unit}`;
  return `${ms}ms`;
}

/** A duration option whose help shows its default as a duration ("60s"), not as milliseconds; `max` bounds it. */
export function durationOption(flags: string, description: string, defaultMs: number, o: { max?: number } = {}): Option {
  const parse = (value: string) => {
    const ms = parseDuration(value);
    if (o.max !== undefined && ms > o.max) throw new InvalidArgumentError(`expected at most ${formatDuration(o.max)}`);
    return ms;
  };
  return new Option(flags, description).argParser(parse).default(defaultMs, formatDuration(defaultMs));
}

/** A count option (0 or more) with its default. */
export function countOption(flags: string, description: string, defaultValue: number): Option {
  return new Option(flags, description).argParser(parseCount).default(defaultValue);
}

export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function parseCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number (0 or more)');
  return n;
}

export function parsePort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port between 1 and 65535');
  return n;
}

/** "BURST/PER_SECOND", e.g. "200/20". */
export function parseRate(value: string): BucketPolicy {
  const m = /^(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(value.trim());
  if (!m || Number(m[1]) <= 0) throw new InvalidArgumentError('expected BURST/PER_SECOND, e.g. 200/20');
  return { capacity: Number(m[1]), refillPerSecond: Number(m[2]) };
}

export function parseListen(value: string): { host: string; port: number } {
  const hp = parseHostPort(value);
  if (!hp) throw new InvalidArgumentError('expected HOST:PORT, e.g. 127.0.0.1:8443 or [::1]:0');
  return hp;
}

/** The agent's home: --home, else $LANTERN_HOME, else ~/.lantern-agent. */
export function resolveHome(flag: string | undefined, env: Record<string, string | undefined>): string {
  return flag ?? env['LANTERN_HOME'] ?? join(homedir(), '.lantern-agent');
}

/** `--log-format pretty|json`: without it, pretty on a terminal and JSON otherwise (a file, a collector). */
export function logFormatOption(): Option {
  return new Option('--log-format <format>', 'log lines: pretty (for a person) or json (for a collector); default: pretty on a terminal, else json').choices(['pretty', 'json']);
}
