import { Writable } from 'node:stream';
import test from 'ava';
import { FaultBoundary, type FaultSurface } from './fault-boundary.js';
import { createLogger } from './logger.js';

function recorder() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: createLogger({ destination, level: 'debug' }) };
}

test('a throw or a rejection is one fault: logged once with a code, counted by surface, its cleanup run', async (t) => {
  const { lines, logger } = recorder();
  const heard: FaultSurface[] = [];
  const faults = new FaultBoundary({ logger, onFault: (s) => heard.push(s) });
  const cleaned: unknown[] = [];
  faults.run('request', () => {
    throw new TypeError('sync');
  }, (err) => cleaned.push((err as Error).message));
  const wrapped = faults.wrap('websocket', async (n: number) => {
    await Promise.resolve();
    throw new RangeError(`async ${n}`);
  }, (err, n) => cleaned.push(`${(err as Error).message} / ${n}`));
  wrapped(7);
  faults.run('timer', () => 'fine');
  await new Promise((r) => setImmediate(r));
  t.deepEqual(cleaned, ['sync', 'async 7 / 7']);
  t.deepEqual(faults.counts(), { request: 1, websocket: 1 });
  t.is(faults.total, 2);
  t.deepEqual(heard, ['request', 'websocket']);
  await new Promise((r) => setTimeout(r, 50));
  const logged = lines.filter((l) => l['code'] === 'LA_ERR_INTERNAL');
  t.is(logged.length, 2, 'one line per fault');
  t.deepEqual(logged.map((l) => l['surface']), ['request', 'websocket']);
});

test('a cleanup that throws, or a logger that throws, is contained too', (t) => {
  const { logger } = recorder();
  const faults = new FaultBoundary({
    logger,
    onFault: () => {
      throw new Error('counting failed');
    },
  });
  t.notThrows(() =>
    faults.run('proxy', () => {
      throw new Error('work');
    }, () => {
      throw new Error('cleanup');
    }),
  );
  t.is(faults.total, 1);
});
