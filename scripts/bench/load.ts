// The machine's load, printed at a benchmark's start and end: a number measured on a machine that
// was busy before the benchmark began says more about the machine than about the code.
import { loadavg } from 'node:os';

/** Above this one-minute load average before starting, a benchmark refuses to report. */
export const MAX_START_LOAD = Number(process.env['BENCH_MAX_LOAD'] ?? 1.0);
/** How long to wait for the load to fall below the ceiling before refusing (BENCH_WAIT_LOAD, seconds). */
const WAIT_S = Number(process.env['BENCH_WAIT_LOAD'] ?? 0);

export const loadAverage = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

/**
 * The one-minute load average once it is at or below MAX_START_LOAD (waiting up to
 * BENCH_WAIT_LOAD seconds for it), or an error saying what was running high.
 */
export async function quietEnough(): Promise<{ ok: true; load: string } | { ok: false; message: string }> {
  const until = Date.now() + WAIT_S * 1000;
  while (loadavg()[0]! > MAX_START_LOAD && Date.now() < until) await new Promise((r) => setTimeout(r, 5000));
  const load = loadAverage();
  if (loadavg()[0]! <= MAX_START_LOAD) return { ok: true, load };
  return {
    ok: false,
    message:
      `load average ${load} (1, 5, 15 min) is above ${MAX_START_LOAD} before starting: a busy machine is not a measurement. ` +
      'Stop what is running, or wait (BENCH_WAIT_LOAD=SECONDS waits for it), then run again.',
  };
}
