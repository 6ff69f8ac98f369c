// `npm run fuzz -- --seconds N [--only NAME]`: every wire-surface fuzz target of
// src/testing/fuzz/targets.ts for N seconds in all (split evenly), with new seeds. Prints the runs
// of each target; on a failure, the seed, the shrunk input and the error, and exits 1.
import fc from 'fast-check';
import { fuzzTargets } from '../src/testing/fuzz/targets.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
};
const seconds = Number(arg('--seconds') ?? 60);
if (!Number.isFinite(seconds) || seconds <= 0) {
  console.error('usage: npm run fuzz -- --seconds N [--only NAME]');
  process.exit(2);
}
const only = arg('--only');
const targets = fuzzTargets.filter((t) => !only || t.name.toLowerCase().includes(only.toLowerCase()));
const share = (seconds * 1000) / targets.length;
let failed = false;
for (const target of targets) {
  const ctx = await target.setup();
  let runs = 0;
  const started = Date.now();
  try {
    const details = await fc.check(target.property(ctx), {
      numRuns: Number.MAX_SAFE_INTEGER,
      interruptAfterTimeLimit: share,
      markInterruptAsFailure: false,
    } as fc.Parameters<unknown[]>);
    runs = details.numRuns;
    if (details.failed) {
      failed = true;
      console.log(`FAIL ${target.name} after ${details.numRuns} runs (seed ${details.seed}, path ${details.counterexamplePath})`);
      console.log(`  input: ${fc.stringify(details.counterexample)}`.slice(0, 2000));
      console.log(`  error: ${String(details.errorInstance)}`.slice(0, 2000));
    } else {
      await target.after(ctx);
      console.log(`ok   ${target.name}: ${runs} runs in ${((Date.now() - started) / 1000).toFixed(0)} s; alive, nothing lost`);
    }
  } catch (err) {
    failed = true;
    console.log(`FAIL ${target.name}:`, (err as Error)?.stack ?? err);
  } finally {
    await target.teardown(ctx);
  }
}
process.exit(failed ? 1 : 0);
