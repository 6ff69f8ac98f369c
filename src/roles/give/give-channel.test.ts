import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import nodeDataChannel from 'node-datachannel';
import { systemClock } from '../../core/clock.js';
import { silentLogger } from '../../core/logger.js';
import { generateTicketKey, TicketIssuer, TicketVerifier } from '../../crypto/tickets.js';
import type { ChannelStream } from '../../net/ice/channel-stream.js';
import { acceptChannelTunnels, openChannelTunnel } from '../../net/ice/channel-tunnel.js';
import { IcePeer } from '../../net/ice/ice-peer.js';
import { listen } from '../../net/listen.js';
import { GiveProxy } from './give-proxy.js';

// Issue 18, item 3: tunnels over WebRTC data channels go through the give proxy's own checks.

test.after.always(async () => {
  await new Promise((r) => setTimeout(r, 200));
  nodeDataChannel.cleanup();
});

const PAGE = randomBytes(1024 * 1024);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function readAll(stream: ChannelStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

test('a tunnel over a data channel gets the ticket check, client slots, destination guard and byte count of the give port', async (t) => {
  const origin = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': PAGE.length, connection: 'close' });
    res.end(PAGE);
  });
  const originPort = (await listen(origin, '127.0.0.1', 0)).port;
  t.teardown(() => origin.close());
  const key = generateTicketKey();
  const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 60_000 });
  const proxy = (allowPrivateDestinations: boolean) =>
    new GiveProxy({ tickets: new TicketVerifier(key.publicKeyPem), clock: systemClock, logger: silentLogger() }, { host: '127.0.0.1', port: 0, allowPrivateDestinations, maxClients: 1 });
  const [open, guarded] = [proxy(true), proxy(false)];
  for (const p of [open, guarded]) {
    await p.start();
    t.teardown(() => p.stop(0));
  }

  const get = new IcePeer('get', { iceServers: [], bindAddress: '127.0.0.1' });
  const give = new IcePeer('give', { iceServers: [], bindAddress: '127.0.0.1' });
  t.teardown(() => {
    get.close();
    give.close();
  });
  get.accept(await give.answer(await get.offer(3000), 3000));
  await get.connected(5000);
  acceptChannelTunnels(give.pc, (request, stream, answer) => {
    // (No error listener here: a refused opener closing its channel must not crash the give side.)
    (request.host === 'guarded.test' ? guarded : open).serveTunnel(stream, { ...request, host: request.host === 'guarded.test' ? '127.0.0.1' : request.host }, { accept: answer.accept, fail: answer.refuse });
  });
  const tunnel = (host: string, withTicket = ticket) => openChannelTunnel(get.pc, { ticket: withTicket, host, port: originPort }, 5000);

  const first = await tunnel('127.0.0.1');
  first.write(`GET /page HTTP/1.1\r\nHost: 127.0.0.1:${originPort}\r\nConnection: close\r\n\r\n`);
  // The first tunnel holds the one client slot (--max-clients 1) until it ends.
  await t.throwsAsync(tunnel('127.0.0.1'), { code: 'LA_ERR_PROXY_BUSY' } as never);
  const response = await readAll(first);
  const body = response.subarray(response.indexOf('\r\n\r\n') + 4);
  t.is(sha(body), sha(PAGE), 'the page came through the data channel intact');
  t.true(open.stats().bytesRelayed >= PAGE.length);
  t.is(open.stats().tunnelsServed, 1, 'the busy one was refused without a slot');

  await t.throwsAsync(tunnel('127.0.0.1', `${ticket.slice(0, -4)}AAAA`), { code: 'LA_ERR_TICKET_INVALID' } as never);
  await t.throwsAsync(tunnel('guarded.test'), { code: 'LA_ERR_DESTINATION_FORBIDDEN' } as never, 'a private destination, refused as on the port');
  open.setPaused(true);
  await t.throwsAsync(tunnel('127.0.0.1'), { code: 'LA_ERR_TICKET_INVALID' } as never, 'paused: no ticket opens it');
});
