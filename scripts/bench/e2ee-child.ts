// One case of the e2ee benchmark in a process of its own (E2EE_CASE: direct or ours): prints
// "ready" once warmed up, then for each line of stdin (milliseconds) runs the case that long and
// prints its rate (encrypt+decrypt pairs per second).
import { createInterface } from 'node:readline';
import { MemoryKeystore } from '../../src/storage/memory-keystore.js';
import { direct, ours, pairsPerSecond } from './e2ee.js';

const step =
  process.env['E2EE_CASE'] === 'direct'
    ? await direct()
    : await ours(async () => {
        const k = new MemoryKeystore();
        await k.open();
        return k;
      });
for (let i = 0; i < 200; i++) await step();
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) process.stdout.write(`${await pairsPerSecond(step, Number(line))}\n`);
