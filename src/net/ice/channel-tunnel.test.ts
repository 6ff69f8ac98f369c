import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import nodeDataChannel, { type PeerConnection } from 'node-datachannel';
import { CHANNEL_WINDOW, type ChannelStream } from './channel-stream.js';
import { linkPeers } from '../../testing/helpers/webrtc.js';
import { acceptChannelTunnels, closePeer, createChannel, openChannelTunnel, type ChannelTunnelHandler } from './channel-tunnel.js';

/** Two peers on loopback, connected (no ICE servers: host candidates only). */
async function pair(t: { teardown(fn: () => void): void }): Promise<{ opener: PeerConnection; acceptor: PeerConnection }> {
  const opener = new nodeDataChannel.PeerConnection('opener', { iceServers: [], bindAddress: '127.0.0.1' });
  const acceptor = new nodeDataChannel.PeerConnection('acceptor', { iceServers: [], bindAddress: '127.0.0.1' });
  t.teardown(() => {
    closePeer(opener);
    closePeer(acceptor);
  });
  linkPeers(opener, acceptor);
  // A first channel starts negotiation; tunnels then open in-band.
  const first = createChannel(opener, 'init');
  await new Promise<void>((resolve) => first.onOpen(resolve));
  return { opener, acceptor };
}

// node-datachannel's threads keep a process alive until cleanup.
test.after.always(async () => {
  await new Promise((r) => setTimeout(r, 200));
  nodeDataChannel.cleanup();
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(stream: ChannelStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Streams left open at a test's end error when its peers close: expected there. */
const quiet = <T extends ChannelStream>(s: T): T => s.on('error', () => undefined);

const echo: ChannelTunnelHandler = (_request, stream, answer) => {
  quiet(stream);
  answer.accept();
  stream.pipe(stream);
};

test('a tunnel carries bytes both ways intact, and each side ends its half', async (t) => {
  const { opener, acceptor } = await pair(t);
  const requests: unknown[] = [];
  acceptChannelTunnels(acceptor, (request, stream, answer) => {
    requests.push(request);
    echo(request, stream, answer);
  });
  const tunnel = quiet(await openChannelTunnel(opener, { ticket: 'T', host: 'example.org', port: 443 }, 5000));
  t.deepEqual(requests, [{ v: 1, ticket: 'T', host: 'example.org', port: 443 }]);
  const sent = randomBytes(8 * 1024 * 1024 + 123);
  const received = readAll(tunnel);
  tunnel.end(sent);
  t.is(sha(await received), sha(sent), '8 MiB echoed intact, then the end came back');
});

test("a reader that does not read holds at most a window: the sender waits, and nothing is lost", async (t) => {
  const { opener, acceptor } = await pair(t);
  const sent = randomBytes(16 * 1024 * 1024);
  let senderDone = false;
  acceptChannelTunnels(acceptor, (_r, stream, answer) => {
    answer.accept();
    quiet(stream).end(sent, () => (senderDone = true));
  });
  const tunnel = quiet(await openChannelTunnel(opener, { ticket: 'T', host: 'example.org', port: 80 }, 5000));
  await new Promise((r) => setTimeout(r, 800));
  t.true(tunnel.readableLength <= CHANNEL_WINDOW + 128 * 1024, `buffered unread: ${tunnel.readableLength}`);
  t.false(senderDone, 'the sender is held back by the window');
  t.is(sha(await readAll(tunnel)), sha(sent));
});

test('refusals reach the opener as the errors a TCP tunnel gives', async (t) => {
  const { opener, acceptor } = await pair(t);
  acceptChannelTunnels(acceptor, (request, stream, answer) => {
    quiet(stream);
    answer.refuse(request.host === 'private.test' ? 'forbidden' : request.ticket === 'bad' ? 'ticket' : 'unreachable');
  });
  await t.throwsAsync(openChannelTunnel(opener, { ticket: 'T', host: 'private.test', port: 80 }, 5000), { code: 'LA_ERR_DESTINATION_FORBIDDEN' } as never);
  await t.throwsAsync(openChannelTunnel(opener, { ticket: 'bad', host: 'a.test', port: 80 }, 5000), { code: 'LA_ERR_TICKET_INVALID' } as never);
  const err = await t.throwsAsync(openChannelTunnel(opener, { ticket: 'T', host: 'a.test', port: 80 }, 5000));
  t.like(err, { code: 'LA_ERR_DESTINATION_UNREACHABLE', details: { status: 'unreachable', peerStatus: 502 } } as never);
});

test('a request that is no request is refused; a sender beyond its window is cut off; a tunnel dropped mid-stream is an error', async (t) => {
  const { opener, acceptor } = await pair(t);
  const acceptorStreams: ChannelStream[] = [];
  const heard: string[] = [];
  acceptChannelTunnels(
    acceptor,
    (_r, stream, answer) => {
      acceptorStreams.push(quiet(stream));
      answer.accept();
    },
    undefined,
    (err) => heard.push(err.message),
  );

  const raw = createChannel(opener, 'data');
  await new Promise<void>((resolve) => raw.onOpen(resolve));
  const answer = new Promise<string>((resolve) => raw.onMessage((m) => resolve(String(m))));
  raw.sendMessage('{"v":1,"ticket":"T","host":"a.test","port":99999}');
  t.deepEqual(JSON.parse(await answer), { ok: false, status: 'bad-request' });

  // A hostile opener: accepted, then 2 MiB without waiting for credit.
  const hostile = createChannel(opener, 'data');
  await new Promise<void>((resolve) => hostile.onOpen(resolve));
  const ok = new Promise<string>((resolve) => hostile.onMessage((m) => resolve(String(m))));
  hostile.sendMessage(JSON.stringify({ v: 1, ticket: 'T', host: 'a.test', port: 80 }));
  t.deepEqual(JSON.parse(await ok), { ok: true });
  const victim = acceptorStreams.at(-1)!;
  const error = once(victim, 'error');
  for (let i = 0; i < 32; i++) hostile.sendMessageBinary(Buffer.alloc(64 * 1024));
  t.regex(String((await error)[0]), /beyond its window/);

  // A tunnel dropped mid-stream (closed without its end): the other side's stream ends in an error, not silently.
  const tunnel = await openChannelTunnel(opener, { ticket: 'T', host: 'a.test', port: 80 }, 5000);
  tunnel.write(Buffer.alloc(1000));
  const other = acceptorStreams.at(-1)!;
  const vanished = once(other, 'error');
  tunnel.destroy();
  t.regex(String((await vanished)[0]), /closed mid-stream/);
  // Each stream's error reached the acceptor's log hook (give logs it at debug).
  t.true(heard.some((m) => /beyond its window/.test(m)), heard.join('; '));
  t.true(heard.some((m) => /closed mid-stream/.test(m)), heard.join('; '));
});

test('a tunnel kept idle by an HTTP agent between requests: setTimeout without a callback emits timeout, like a socket', async (t) => {
  const { opener, acceptor } = await pair(t);
  acceptChannelTunnels(acceptor, echo);
  const tunnel = quiet(await openChannelTunnel(opener, { ticket: 'T', host: 'example.org', port: 80 }, 5000));
  const started = performance.now();
  // As http.Agent's keepSocketAlive sets it on a free connection (and listens for 'timeout').
  tunnel.setTimeout(150);
  await once(tunnel, 'timeout');
  t.true(performance.now() - started >= 140, 'not before the deadline');
  // A callback is a one-time 'timeout' listener, as on a socket.
  let called = 0;
  tunnel.setTimeout(100, () => called++);
  await once(tunnel, 'timeout');
  t.is(called, 1);
  tunnel.destroy();
});
