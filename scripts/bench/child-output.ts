// The benchmarks' child processes (our roles, the destinations, the server) print one JSON line
// when they are up; V8's traces, when a run passes node flags through, may come before and after it.
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';

/** The first line of `stdout` that is a JSON object; every other line goes to `other`. */
export function firstJsonLine(stdout: Readable, other: (line: string) => void): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let found = false;
    const lines = createInterface({ input: stdout });
    lines.on('line', (line) => {
      if (found || !line.startsWith('{')) return other(line);
      found = true;
      resolve(JSON.parse(line) as Record<string, unknown>);
    });
    lines.once('close', () => found || reject(new Error('the child ended before it printed its JSON line')));
  });
}

/**
 * Node's flags for a benchmark's child written in TypeScript: tsx for the script itself, and
 * shipped.mjs so that what it imports from src runs as built in dist/, as it ships.
 */
export const TS_CHILD = ['--import', 'tsx', '--import', fileURLToPath(new URL('./shipped.mjs', import.meta.url))];
