import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { Transform } from 'node:stream';
import test from 'ava';
import { listen } from '../../net/listen.js';
import { connectRelay } from '../../testing/helpers/connect-relay.js';
import { probePeer } from './probe.js';

// Each verdict of a probe against a give peer that misbehaves in one way: a TLS HTTP/2 CONNECT relay
// with its own identity (as the give role's transport is), and an origin serving the canary.

type Misbehaviour = 'none' | 'slow' | 'throttle' | 'corrupt' | 'silent';

async function peer(t: { teardown(fn: () => unknown): void }, how: Misbehaviour) {
  // 'silent' never answers the CONNECT.
  const relay = await connectRelay(t, { onConnect: () => how !== 'silent', transform: () => misbehave(how) });
  return { peerId: 'p', ...relay.peer };
}

/** What the relay does to the bytes coming back from the destination. */
function misbehave(how: Misbehaviour): Transform {
  let flipped = false;
  let first = true;
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      // The destination's first bytes come 900 ms late.
      if (how === 'slow' && first) {
        first = false;
        return setTimeout(() => done(null, chunk), 900);
      }
      // The first bytes at once (so it is not slow), then about 40 KB/s: far under the 1 Mbit/s floor.
      if (how === 'throttle' && first) {
        first = false;
        this.push(chunk.subarray(0, 512));
        return setTimeout(() => done(null, chunk.subarray(512)), Math.ceil(chunk.length / 40));
      }
      if (how === 'corrupt' && !flipped && chunk.length > 200) {
        // Past the response head: one byte of the body changed.
        const copy = Buffer.from(chunk);
        copy[copy.length - 1] ^= 0xff;
        flipped = true;
        return done(null, copy);
      }
      if (how === 'throttle') return setTimeout(() => done(null, chunk), Math.ceil(chunk.length / 40));
      done(null, chunk);
    },
  });
}

async function origin(t: { teardown(fn: () => unknown): void }) {
  const body = randomBytes(64 * 1024);
  const server = createHttpServer((_req, res) => res.end(body));
  const port = (await listen(server, '127.0.0.1', 0)).port;
  t.teardown(() => server.close());
  const canary = { nonce: '0'.repeat(32), path: '/canary', length: body.length, sha256: createHash('sha256').update(body).digest('hex') };
  return { server: { host: '127.0.0.1', port, tls: false }, canary };
}

const probe = async (t: { teardown(fn: () => unknown): void }, how: Misbehaviour, over: { timeoutMs?: number } = {}) => {
  const o = await origin(t);
  return probePeer(await peer(t, how), { ticket: 'ticket', ...o, timeoutMs: over.timeoutMs ?? 4000, maxLatencyMs: 400, minMbps: 1 });
};

test('a peer that relays faithfully and fast passes, with its latency and throughput', async (t) => {
  const v = await probe(t, 'none');
  t.like(v, { ok: true, status: 'ok' });
  t.true(v.throughputMbps! > 1 && v.latencyMs! < 400);
});

test('a peer whose first byte comes later than --max-latency is slow', async (t) => {
  t.like(await probe(t, 'slow'), { ok: false, status: 'slow' });
});

test('a peer that relays under --min-mbps has low throughput', async (t) => {
  t.like(await probe(t, 'throttle'), { ok: false, status: 'low-throughput' });
});

test('a peer that changes one byte of the content fails with bad-content', async (t) => {
  t.like(await probe(t, 'corrupt'), { ok: false, status: 'bad-content' });
});

test('a peer that accepts the tunnel and never answers times out within --timeout', async (t) => {
  const started = performance.now();
  t.like(await probe(t, 'silent', { timeoutMs: 800 }), { ok: false, status: 'timeout' });
  t.true(performance.now() - started < 2000);
});
