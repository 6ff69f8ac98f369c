import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import test from 'ava';
import { BoundedWriter, WRITE_OVERHEAD_BYTES } from './backpressure.js';

/** A sink whose writes complete only when the test says so. */
function manualSink() {
  const callbacks: Array<() => void> = [];
  return { callbacks, sink: { write: (_d: Buffer | string, done: () => void) => callbacks.push(done) }, flush: () => callbacks.splice(0).forEach((cb) => cb()) };
}

test('above high the source is paused, below low resumed, above max the connection is dropped', (t) => {
  const { sink, flush } = manualSink();
  const events: string[] = [];
  const source = { pause: () => events.push('pause'), resume: () => events.push('resume') };
  const writer = new BoundedWriter(sink, { source, limits: { high: 1000, low: 300, max: 3000 }, drop: () => events.push('drop') });
  const chunk = Buffer.alloc(400 - WRITE_OVERHEAD_BYTES);
  t.true(writer.write(chunk));
  t.true(writer.write(chunk));
  t.deepEqual(events, []);
  t.true(writer.write(chunk), 'over high: still written, source paused');
  t.deepEqual(events, ['pause']);
  t.true(writer.holding);
  t.is(writer.pending, 1200);
  flush();
  t.deepEqual(events, ['pause', 'resume']);
  for (let i = 0; i < 7; i++) writer.write(chunk);
  t.deepEqual(events, ['pause', 'resume', 'pause']);
  t.false(writer.write(chunk), 'over max: dropped');
  t.deepEqual(events, ['pause', 'resume', 'pause', 'drop']);
  t.false(writer.write('more'), 'nothing is written after the drop');
});

test('tiny writes count their per-write cost; without a source to pause, over high drops', (t) => {
  const { sink } = manualSink();
  let dropped = 0;
  const writer = new BoundedWriter(sink, { limits: { high: 10 * WRITE_OVERHEAD_BYTES, low: 0, max: 1e9 }, drop: () => dropped++ });
  let written = 0;
  while (writer.write('x')) written++;
  t.is(written, 9, 'one-byte writes are counted at what they cost, not at one byte');
  t.is(dropped, 1);
});

test('a real peer that never reads: the sender stops reading its source, then is dropped; the queued bytes stay bounded', async (t) => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  client.pause(); // never reads
  const [accepted] = (await once(server, 'connection')) as [Socket];
  let dropped = false;
  let paused = 0;
  const source = { pause: () => paused++, resume: () => undefined };
  const writer = new BoundedWriter(accepted, { source, drop: () => ((dropped = true), accepted.destroy()) });
  const block = Buffer.alloc(64 * 1024);
  let maxPending = 0;
  for (let i = 0; i < 4096 && !dropped; i++) {
    writer.write(block);
    maxPending = Math.max(maxPending, writer.pending);
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  t.true(paused >= 1, 'the source was paused first');
  t.true(dropped, 'then the connection was dropped');
  t.true(maxPending <= 1024 * 1024 + block.length + WRITE_OVERHEAD_BYTES, `at most max + one write queued (${maxPending})`);
  client.destroy();
});
