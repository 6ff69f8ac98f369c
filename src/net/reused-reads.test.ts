import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import test from 'ava';
import { PeerIdentity } from '../crypto/peer-identity.js';
import { until } from '../testing/helpers/observe.js';
import { listen } from './listen.js';
import { relay } from './relay.js';
import { connectReusingReads, readBuffersOut, readsReused } from './reused-reads.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A sink socket for the relay to write into, and its far end, a receiver that reads everything
 * (with `slow`, in fits and starts, so that writes stay pending in the sink while the source keeps
 * sending: a buffer read into again before its write flushed would corrupt what arrives).
 */
async function receivingSink(t: import('ava').ExecutionContext, slow: boolean): Promise<{ sink: Socket; ended: Promise<unknown>; received: Buffer[] }> {
  const sinkServer = createServer();
  const { port: sinkPort } = await listen(sinkServer, '127.0.0.1', 0);
  t.teardown(() => sinkServer.close());
  const receiver = connect(sinkPort, '127.0.0.1');
  const [sink] = (await once(sinkServer, 'connection')) as [Socket];
  const received: Buffer[] = [];
  receiver.on('data', (b: Buffer) => {
    received.push(b);
    if (slow && received.length % 8 === 0) {
      receiver.pause();
      setTimeout(() => receiver.resume(), 5);
    }
  });
  return { sink, ended: once(receiver, 'end'), received };
}

/** Origin → (socket with reused reads) → relay → a receivingSink: what arrived, and the longest read. */
async function throughRelay(t: import('ava').ExecutionContext, payload: Buffer, options: { slowReceiver: boolean; attachAfterMs?: number }): Promise<{ got: Buffer; longestRead: number }> {
  const origin = createServer((s) => {
    s.on('error', () => undefined);
    s.end(payload);
  });
  const { port: originPort } = await listen(origin, '127.0.0.1', 0);
  t.teardown(() => origin.close());
  const { sink, ended, received } = await receivingSink(t, options.slowReceiver);
  const upstream = connectReusingReads({ host: '127.0.0.1', port: originPort });
  await once(upstream, 'connect');
  if (options.attachAfterMs) await new Promise((r) => setTimeout(r, options.attachAfterMs));
  let counted = 0;
  let longestRead = 0;
  relay(upstream, sink, {
    onBytes: (n) => {
      counted += n;
      longestRead = Math.max(longestRead, n);
    },
  });
  await ended;
  t.is(counted, payload.length, 'every byte counted once');
  return { got: Buffer.concat(received), longestRead };
}

test('a bulk transfer into a receiver that keeps stalling arrives intact (no lent buffer is read into again), in reads longer than 64 KiB', async (t) => {
  const payload = randomBytes(24 * 1024 * 1024);
  const { got, longestRead } = await throughRelay(t, payload, { slowReceiver: true });
  t.is(got.length, payload.length);
  t.is(sha(got), sha(payload));
  // While the receiver stalls the kernel queues more than 64 KiB, and a bulk read takes up to 256 KiB of it.
  t.log(`longest read ${longestRead} bytes`);
  t.true(longestRead > 64 * 1024 && longestRead <= 256 * 1024, `longest read ${longestRead} bytes`);
});

test('data the destination sends before the relay attaches is kept, in order, with the rest', async (t) => {
  const payload = randomBytes(3 * 1024 * 1024 + 17);
  const { got } = await throughRelay(t, payload, { slowReceiver: false, attachAfterMs: 100 });
  t.is(sha(got), sha(payload));
});

let tlsCredentials: { key: string; cert: string } | undefined;
function credentials(): { key: string; cert: string } {
  if (!tlsCredentials) {
    const { privateKeyPem, certificatePem } = new PeerIdentity().tlsCredentials();
    tlsCredentials = { key: privateKeyPem, cert: certificatePem };
  }
  return tlsCredentials;
}

/**
 * A client uploads through an accepted socket (what give's and get's front ends relay: TCP, or TLS
 * with `tls`) → relay → sink → a receiver that stalls now and then. The server's socket is left
 * paused for a while first (as a handshake leaves it), so Node has read some of the upload before
 * the relay attaches.
 */
async function uploadThroughRelay(t: import('ava').ExecutionContext, payload: Buffer, options: { holdMs: number; tls?: boolean }): Promise<{ got: Buffer; accepted: Socket; longestRead: number }> {
  const server = options.tls ? createTlsServer(credentials()) : createServer();
  const { port } = await listen(server, '127.0.0.1', 0);
  t.teardown(() => server.close());
  const { sink, ended, received } = await receivingSink(t, true);
  const client = options.tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : connect(port, '127.0.0.1');
  client.on('error', () => undefined);
  const [accepted] = (await once(server, options.tls ? 'secureConnection' : 'connection')) as [Socket];
  accepted.pause();
  client.end(payload);
  await new Promise((r) => setTimeout(r, options.holdMs));
  const readBefore = accepted.readableLength;
  let counted = 0;
  let longestRead = 0;
  relay(accepted, sink, {
    onBytes: (n) => {
      counted += n;
      longestRead = Math.max(longestRead, n);
    },
  });
  t.true(readsReused(accepted), 'the accepted socket reads into reused buffers once relayed');
  await ended;
  t.log(`${readBefore} bytes read before the relay attached`);
  t.is(counted, payload.length, 'every byte counted once');
  return { got: Buffer.concat(received), accepted, longestRead };
}

test('an upload through an accepted socket switched to reused reads arrives intact, what Node read before the switch first, in reads longer than 64 KiB', async (t) => {
  const payload = randomBytes(24 * 1024 * 1024 + 5);
  const { got, longestRead } = await uploadThroughRelay(t, payload, { holdMs: 100 });
  t.is(got.length, payload.length);
  t.is(sha(got), sha(payload));
  t.true(longestRead > 64 * 1024 && longestRead <= 256 * 1024, `longest read ${longestRead} bytes`);
});

test('an accepted socket whose client sent everything and closed before the switch: the bytes and the end both arrive', async (t) => {
  const payload = randomBytes(1000);
  const { got, accepted } = await uploadThroughRelay(t, payload, { holdMs: 100 });
  t.is(sha(got), sha(payload));
  t.true(accepted.readableEnded, 'the relay saw the end');
});

// Serial: the count of buffers out is the process's.
test.serial('an upload through an accepted TLS socket switched to reused reads arrives intact, full records in lent buffers', async (t) => {
  const payload = randomBytes(24 * 1024 * 1024 + 5);
  const before = readBuffersOut();
  let most = 0;
  const watch = setInterval(() => (most = Math.max(most, readBuffersOut() - before)), 1);
  const { got, accepted } = await uploadThroughRelay(t, payload, { holdMs: 100, tls: true });
  clearInterval(watch);
  t.is(sha(got), sha(payload));
  t.true((accepted as TLSSocket).encrypted);
  t.true(most > 0, 'full 16 KiB records were read into lent buffers');
});

test('an accepted socket switched at once (nothing read yet) relays the same', async (t) => {
  const payload = randomBytes(2 * 1024 * 1024 + 3);
  const { got } = await uploadThroughRelay(t, payload, { holdMs: 0 });
  t.is(sha(got), sha(payload));
});

test('many sockets with short and long reads interleaved, on the shared buffer and on lent ones, each gets its own bytes', async (t) => {
  const payloads = Array.from({ length: 20 }, (_, i) => randomBytes(i % 2 ? 300 + i : 2 * 1024 * 1024 + i));
  const results = await Promise.all(payloads.map((p) => throughRelay(t, p, { slowReceiver: true })));
  results.forEach(({ got }, i) => t.is(sha(got), sha(payloads[i]!), `socket ${i}`));
});

/**
 * A sink that holds each chunk it is given for a while (and copies it only then), yet never says it
 * is full: the relay keeps reading meanwhile, so only the buffers' own bookkeeping (a lent buffer
 * is not read into until released; a short read on the shared buffer is copied out) keeps what the
 * sink holds intact.
 */
async function intoHoldingSink(t: import('ava').ExecutionContext, send: (s: Socket) => Promise<Buffer>): Promise<{ sent: Buffer; got: Buffer }> {
  let sent: Promise<Buffer> | undefined;
  const origin = createServer((s) => {
    s.on('error', () => undefined);
    sent = send(s);
  });
  const { port } = await listen(origin, '127.0.0.1', 0);
  t.teardown(() => origin.close());
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 64 * 1024 * 1024,
    write(chunk: Buffer, _encoding, done) {
      setTimeout(() => {
        received.push(Buffer.from(chunk));
        done();
      }, 2);
    },
  });
  const upstream = connectReusingReads({ host: '127.0.0.1', port });
  relay(upstream, sink, { onBytes: () => undefined });
  await once(sink, 'finish');
  return { sent: await sent!, got: Buffer.concat(received) };
}

test('a sink that holds lent chunks without pushing back: none is read into before it is released', async (t) => {
  const { sent, got } = await intoHoldingSink(t, async (s) => {
    const payload = randomBytes(3 * 1024 * 1024);
    s.end(payload);
    return payload;
  });
  t.is(sha(got), sha(sent));
});

test('a sink that holds short chunks without pushing back: short reads are copied off the shared buffer', async (t) => {
  const { sent, got } = await intoHoldingSink(t, async (s) => {
    const pieces: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const piece = randomBytes(700 + i);
      pieces.push(piece);
      s.write(piece);
      await new Promise((r) => setTimeout(r, 1));
    }
    s.end();
    return Buffer.concat(pieces);
  });
  t.is(sha(got), sha(sent));
});

/** Writes 64 KiB chunks until the far end stops reading (the kernel's buffers fill), up to 64 MiB. */
function sendUntilStalled(s: Socket): void {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let left = 1024;
  const pump = () => {
    while (left-- > 0 && !s.destroyed) if (!s.write(chunk)) return void s.once('drain', pump);
  };
  pump();
}

/**
 * N tunnels whose source keeps sending into a sink whose reader never reads. The source is a
 * dialed destination (what a download reads) or an accepted socket switched when the relay takes
 * it over (what an upload reads).
 */
async function stalledTunnels(t: import('ava').ExecutionContext, source: 'dialed' | 'accepted'): Promise<void> {
  const N = 20;
  const sources = createServer((s) => {
    s.on('error', () => undefined);
    if (source === 'dialed') sendUntilStalled(s);
  });
  const { port: sourcePort } = await listen(sources, '127.0.0.1', 0);
  const sinkServer = createServer();
  const { port: sinkPort } = await listen(sinkServer, '127.0.0.1', 0);
  t.teardown(() => {
    sources.close();
    sinkServer.close();
  });
  const before = readBuffersOut();
  const sockets: Socket[] = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  let relayed = 0;
  for (let i = 0; i < N; i++) {
    const reader = connect(sinkPort, '127.0.0.1');
    reader.pause(); // never reads
    const [sink] = (await once(sinkServer, 'connection')) as [Socket];
    sink.on('error', () => undefined);
    let from: Socket;
    if (source === 'dialed') {
      from = connectReusingReads({ host: '127.0.0.1', port: sourcePort });
      from.on('error', () => undefined);
      await once(from, 'connect');
    } else {
      const uploader = connect(sourcePort, '127.0.0.1');
      uploader.on('error', () => undefined);
      [from] = (await once(sources, 'connection')) as [Socket];
      sendUntilStalled(uploader);
      sockets.push(uploader);
    }
    relay(from, sink, { onBytes: (n) => (relayed += n) });
    if (source === 'accepted') t.true(readsReused(from));
    sockets.push(reader, sink, from);
  }
  // Until every relay has stalled: nothing more moves for 300 ms.
  let seen = -1;
  for (let i = 0; i < 100 && seen !== relayed; i++) {
    seen = relayed;
    await new Promise((r) => setTimeout(r, 300));
  }
  t.true(relayed > N * 1024 * 1024, `the relays moved data first (${relayed} bytes)`);
  const held = readBuffersOut() - before;
  // At most one each: the buffer its pending write holds, none to read into while paused (that
  // was one more, 21 for 20). What a pending write holds is mostly a copied short read, the first
  // read after each drain (2 to 12 of 20 held, depending on the machine's load).
  t.true(held <= N, `${held} buffers held by ${N} stalled tunnels`);
  for (const s of sockets) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  t.is(readBuffersOut(), before, 'all given back once the tunnels closed');
}

// Serial: the count of buffers out is the process's, and the other tests here run at the same time.
test.serial('tunnels stalled by a client that never reads hold one read buffer each, and give it back when they close', (t) => stalledTunnels(t, 'dialed'));

// Serial, as above.
test.serial('uploads stalled by a destination that never reads hold one read buffer each (accepted sockets switched), and give it back', (t) => stalledTunnels(t, 'accepted'));

// Serial, as above.
test.serial('tunnels closed in the middle of a bulk transfer give back every read buffer', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 9);
  const origin = createServer((s) => {
    s.on('error', () => undefined);
    let left = 4096;
    const pump = () => {
      while (left-- > 0 && !s.destroyed) if (!s.write(chunk)) return void s.once('drain', pump);
    };
    pump();
  });
  const { port: originPort } = await listen(origin, '127.0.0.1', 0);
  // The sink reads in bursts, so that writes wait now and then and hold their lent buffers (a sink
  // that reads at once frees them before anyone looks, on a loaded machine every time).
  const sinkServer = createServer((s) => {
    s.on('error', () => undefined).pause();
    const burst = setInterval(() => {
      s.resume();
      setTimeout(() => s.pause(), 5);
    }, 20);
    s.once('close', () => clearInterval(burst));
  });
  const { port: sinkPort } = await listen(sinkServer, '127.0.0.1', 0);
  t.teardown(() => {
    origin.close();
    sinkServer.close();
  });
  const before = readBuffersOut();
  const upstreams: Socket[] = [];
  t.teardown(() => upstreams.forEach((s) => s.destroy()));
  let relayed = 0;
  for (let i = 0; i < 10; i++) {
    const sink = connect(sinkPort, '127.0.0.1');
    sink.on('error', () => undefined);
    const upstream = connectReusingReads({ host: '127.0.0.1', port: originPort });
    upstream.on('error', () => undefined);
    await Promise.all([once(sink, 'connect'), once(upstream, 'connect')]);
    relay(upstream, sink, { onBytes: (n) => (relayed += n) });
    upstreams.push(upstream, sink);
  }
  // Closed while some hold a pool buffer (a moment a busy machine may need a few tries to catch).
  await until('bulk reads in pool buffers', async () => (relayed > 10 * 1024 * 1024 && readBuffersOut() > before ? true : undefined), 10_000);
  t.true(readBuffersOut() > before, 'bulk reads were in pool buffers');
  for (const s of upstreams) s.destroy();
  await new Promise((r) => setTimeout(r, 200));
  t.is(readBuffersOut(), before);
});
