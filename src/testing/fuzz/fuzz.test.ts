import test from 'ava';
import fc from 'fast-check';
import { fuzzTargets } from './targets.js';

// Every wire surface, fuzzed briefly on each `npm test` (a new seed each time; a failure prints
// the seed and the shrunk input). `npm run fuzz -- --seconds N` runs the same targets longer.
for (const target of fuzzTargets) {
  test(`fuzz: ${target.name}`, async (t) => {
    const ctx = await target.setup();
    t.teardown(() => target.teardown(ctx));
    await t.notThrowsAsync(async () => fc.assert(target.property(ctx), { numRuns: target.runs, interruptAfterTimeLimit: 20_000 }), 'the property holds');
    await t.notThrowsAsync(target.after(ctx), 'the component is alive and lost nothing');
  });
}
