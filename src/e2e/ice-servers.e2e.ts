import test from 'ava';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { writeFile } from 'node:fs/promises';
import nodeDataChannel, { type PeerConnection } from 'node-datachannel';
import { adoptChannel, closePeer, createChannel } from '../net/ice/channels.js';
import { rtcConfig } from '../net/ice/rtc-config.js';
import type { IceServersResponse } from '../protocol/messages.js';
import { bindingRequest, parseBindingSuccess } from '../protocol/stun.js';
import { addAgent } from '../testing/helpers/agents.js';
import { startServer } from '../testing/helpers/cli.js';
import { startCoturn } from '../testing/helpers/coturn.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { tempDir } from '../testing/helpers/temp-dir.js';
import { linkPeers } from '../testing/helpers/webrtc.js';

// Issue 18, items 3 and 4 (the server's part): STUN answered by the server itself, and TURN
// credentials it mints for a real coturn by the TURN REST API scheme.

// node-datachannel's threads keep a process alive until cleanup.
test.after.always(() => nodeDataChannel.cleanup());

/** Sends each datagram from one socket and collects what comes back within `ms`. */
async function udpExchange(port: number, datagrams: Buffer[], ms = 400): Promise<{ from: number; answers: Buffer[] }> {
  const socket = createSocket('udp4');
  const answers: Buffer[] = [];
  socket.on('message', (msg) => answers.push(msg));
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  for (const d of datagrams) socket.send(d, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, ms));
  const from = socket.address().port;
  socket.close();
  return { from, answers };
}

/** Two in-process peers connected with `config`; resolves with the round trip of one message, or rejects on failure. */
async function connectPair(config: ReturnType<typeof rtcConfig>, timeoutMs: number): Promise<{ echoed: string }> {
  const a: PeerConnection = new nodeDataChannel.PeerConnection('a', config);
  const b: PeerConnection = new nodeDataChannel.PeerConnection('b', config);
  try {
    linkPeers(a, b);
    b.onDataChannel((dc) => adoptChannel(b, dc).onMessage((m) => dc.sendMessage(`echo ${String(m)}`)));
    const dc = createChannel(a, 'probe');
    const echoed = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no data channel within ${timeoutMs} ms (state ${a.state()})`)), timeoutMs);
      dc.onOpen(() => dc.sendMessage('hello'));
      dc.onMessage((m) => {
        clearTimeout(timer);
        resolve(String(m));
      });
    });
    return { echoed };
  } finally {
    closePeer(a);
    closePeer(b);
  }
}

test('the server answers STUN Binding requests with the address it sees, drops everything else, and limits the rate per network', async (t) => {
  const dir = await tempDir('lantern-stun-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--stun-listen', '127.0.0.1:0', '--stun-rate', '3']);
  t.teardown(() => server.stop());
  const listening = server.events.find((e) => e['event'] === 'stun-listening')!;
  t.like(listening, { host: '127.0.0.1' });
  const port = Number(listening['port']);

  const id = randomBytes(12);
  const one = await udpExchange(port, [bindingRequest(id)]);
  t.is(one.answers.length, 1);
  t.deepEqual(parseBindingSuccess(one.answers[0]!, id), { address: '127.0.0.1', port: one.from }, 'the answer names the address and port the request came from');

  const junk = [Buffer.from([0x16]), Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(20), Buffer.concat([bindingRequest(id).subarray(0, 4), Buffer.alloc(16)])];
  t.is((await udpExchange(port, junk)).answers.length, 0, 'one byte, HTTP, zeros and a request without the magic cookie get nothing');

  // Bursts of twice the rate (6), then nothing until the bucket refills.
  const flood = await udpExchange(port, Array.from({ length: 20 }, () => bindingRequest(randomBytes(12))), 50);
  t.true(flood.answers.length <= 7 && flood.answers.length >= 3, `${flood.answers.length} of 20 answered`);
  await new Promise((r) => setTimeout(r, 500)); // a token comes back every third of a second
  t.is((await udpExchange(port, [bindingRequest(id)])).answers.length, 1, 'and answers again once the bucket refills');
});

test('clients get STUN and a TURN credential minted for them; a real coturn accepts it (and not a forged one), and two peers connect through it relay-only', async (t) => {
  await requireTool('turnserver');
  const dir = await tempDir('lantern-turn-');
  t.teardown(() => dir.remove());
  const secret = randomBytes(24).toString('base64url');
  await writeFile(`${dir.path}/turn-secret`, `${secret}\n`);
  const coturn = await startCoturn(t, { host: '127.0.0.1', secret, allowLoopbackPeers: true });
  const turnUrl = `turn:127.0.0.1:${coturn.port}?transport=udp`;
  const server = await startServer(`${dir.path}/data`, ['--stun-listen', '0.0.0.0:0', '--turn-url', turnUrl, '--turn-secret-file', `${dir.path}/turn-secret`, '--turn-ttl', '10m']);
  t.teardown(() => server.stop());
  const stunPort = Number(server.events.find((e) => e['event'] === 'stun-listening')!['port']);
  const user = await addAgent(server, dir.path, 'user');
  const api = await user.api();
  t.teardown(() => api.close());

  const before = Date.now();
  const answer: IceServersResponse = await api.iceServers();
  t.deepEqual(answer.iceServers[0], { urls: [`stun:127.0.0.1:${stunPort}`] }, 'a wildcard STUN listener is named by the host the API was reached at');
  const turn = answer.iceServers[1]!;
  t.deepEqual(turn.urls, [turnUrl]);
  const [expiry, userId] = turn.username!.split(':');
  t.is(userId, user.userId);
  t.true(Math.abs(Number(expiry) * 1000 - (before + 600_000)) < 5000, 'valid for --turn-ttl');
  t.is(turn.credential, createHmac('sha1', secret).update(turn.username!).digest('base64'), 'the TURN REST API password');

  // Relay-only: the data channel can only open through coturn, with the credential the server minted.
  const relayed = await connectPair(rtcConfig(answer.iceServers, { relayOnly: true }), 10_000);
  t.is(relayed.echoed, 'echo hello');
  // (libdatachannel names the types of a relayed pair inconsistently; coturn's log says what happened.)
  const escaped = turn.username!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  t.regex(coturn.log(), new RegExp(`user <${escaped}>: incoming packet ALLOCATE processed, success`), 'coturn allocated a relay for the minted credential');
  t.regex(coturn.log(), new RegExp(`user <${escaped}>: incoming packet CREATE_PERMISSION processed, success`), 'and relayed toward the other peer');
  const forged = [{ urls: [turnUrl], username: turn.username!, credential: createHmac('sha1', 'not-the-secret').update(turn.username!).digest('base64') }];
  await t.throwsAsync(connectPair(rtcConfig(forged, { relayOnly: true }), 3000), { message: /no data channel/ }, 'a credential not made with the secret is refused by coturn');
  t.regex(coturn.log(), new RegExp(`user <${escaped}>: incoming packet \\w+ processed, error 401`), 'coturn said 401 to the forged one');
  // And through the server's own STUN, without TURN, two peers on one machine connect directly.
  const direct = await connectPair(rtcConfig([answer.iceServers[0]!]), 5000);
  t.is(direct.echoed, 'echo hello');
});
