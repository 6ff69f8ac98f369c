import test from 'ava';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import nodeDataChannel from 'node-datachannel';
import { LanternError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import type { Address, IceSignal } from '../../protocol/messages.js';
import { listen } from '../listen.js';
import { PeerTunnels } from '../tunnel.js';
import { IceListener } from './ice-listener.js';
import { IceTunnels } from './ice-tunnels.js';
import { connect } from 'node:net';

// Issue 18, item 3: a get client reaches a give peer behind a NAT over WebRTC, one offer and one
// answer carried as messages (here handed over in process, as the inbox would hand them on).

test.after.always(async () => {
  await new Promise((r) => setTimeout(r, 200));
  nodeDataChannel.cleanup();
});

const PAGE = randomBytes(256 * 1024);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const TICKET = 'good-ticket';

async function origin(t: { teardown(fn: () => void): void }): Promise<number> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': PAGE.length });
    res.end(PAGE);
  });
  t.teardown(() => server.close());
  return (await listen(server, '127.0.0.1', 0)).port;
}

/** A give side (listener) and a get side (tunnels), each one device, the signals passed between them with a little delay. */
function pair(t: { teardown(fn: () => void): void }, o: { signWith?: PeerIdentity; maxPerUser?: number; drop?: (s: IceSignal) => boolean } = {}) {
  const identity = new PeerIdentity();
  const giveAddress: Address = { userId: randomUUID(), deviceId: 1 };
  const getAddress: Address = { userId: randomUUID(), deviceId: 2 };
  const sent: IceSignal[] = [];
  let tunnels!: IceTunnels;
  const later = (fn: () => void) => setTimeout(fn, 5);
  const listener = new IceListener(
    {
      signaling: { send: async (to, signal) => void (sent.push(signal), o.drop?.(signal) || later(() => tunnels.deliver(giveAddress, signal))) },
      iceServers: async () => [],
      identity: o.signWith ?? identity,
      logger: silentLogger(),
      ticketOk: (ticket) => ticket === TICKET,
      paused: () => false,
      serve: (req, stream, answer) => {
        // A minimal give: a TCP connection to the destination, piped both ways.
        const upstream = connect(req.port, req.host, () => {
          answer.accept();
          stream.pipe(upstream).pipe(stream);
        });
        upstream.on('error', () => answer.refuse('unreachable'));
      },
    },
    { bindAddress: '127.0.0.1', connectTimeoutMs: 4000, ...(o.maxPerUser ? { maxPerUser: o.maxPerUser } : {}) },
  );
  tunnels = new IceTunnels(
    {
      signaling: { send: async (_to, signal) => void (sent.push(signal), later(() => void listener.handle(getAddress, signal))) },
      iceServers: async () => [],
      logger: silentLogger(),
    },
    { bindAddress: '127.0.0.1', connectTimeoutMs: 4000 },
  );
  t.teardown(() => {
    tunnels.close();
    listener.close();
  });
  const peer = { host: '192.0.2.1', port: 1, identityKey: identity.publicKey, ice: giveAddress };
  return { tunnels, listener, peer, sent, getAddress, giveAddress };
}

async function fetchPage(socket: Socket | NodeJS.ReadWriteStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request({ path: '/', headers: { connection: 'close' }, createConnection: () => socket as Socket }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    });
    req.on('error', reject);
    req.end();
  });
}

test('tunnels through a peer reached over WebRTC: one offer and one answer, then a channel per tunnel on the same connection', async (t) => {
  const port = await origin(t);
  const { tunnels, listener, peer, sent } = pair(t);
  const pool = new PeerTunnels({ ice: tunnels });
  t.is(pool.path(peer), undefined, 'no connection yet');
  const pages = await Promise.all([0, 1, 2].map(async () => fetchPage((await pool.open(peer, TICKET, { host: '127.0.0.1', port }, 5000)) as Socket)));
  for (const page of pages) t.is(sha(page), sha(PAGE));
  // One offer and one answer for the three (two of each when libdatachannel closed the first
  // connection on its own before the answer was taken, and it was made again).
  const kinds = sent.map((s) => s.kind);
  if (kinds.length > 2) t.log('the first connection closed under us before the answer; made again');
  t.true(
    ['offer,answer', 'offer,answer,offer,answer'].includes(kinds.join(',')),
    `three tunnels asked for at once share one connection: ${kinds.join(',')}`,
  );
  const before = sent.length;
  const offer = sent[0] as Extract<IceSignal, { kind: 'offer' }>;
  t.is(offer.ticket, TICKET);
  t.is(pool.path(peer), 'ice');
  t.is(listener.stats().connections, 1);
  t.is(listener.stats().paths.ice, 1);
  // A later tunnel rides the connection that is up.
  t.is(sha(await fetchPage((await pool.open(peer, TICKET, { host: '127.0.0.1', port }, 5000)) as Socket)), sha(PAGE));
  t.is(sent.length, before, 'no new offer: the connection up is used');
  // The connection drops (the give side closes it): the next tunnel makes a new one.
  listener.close();
  await new Promise((r) => setTimeout(r, 300));
  t.is(pool.path(peer), undefined);
});

test('an offer with a bad ticket gets a refusal and nothing of the peer: no description, no candidate', async (t) => {
  const { tunnels, peer, sent } = pair(t);
  const err = await t.throwsAsync(tunnels.open(peer, 'bad-ticket', { host: '127.0.0.1', port: 9 }, 3000));
  t.true(LanternError.is(err, 'LA_ERR_TICKET_INVALID'));
  t.deepEqual(
    sent.map((s) => s.kind),
    ['offer', 'refused'],
  );
  t.false(JSON.stringify(sent[1]).includes('candidate'));
});

test('an answer signed by another identity key is refused before any connection (LA_ERR_PEER_IDENTITY_MISMATCH)', async (t) => {
  const { tunnels, peer } = pair(t, { signWith: new PeerIdentity() });
  const err = await t.throwsAsync(tunnels.open(peer, TICKET, { host: '127.0.0.1', port: 9 }, 3000));
  t.true(LanternError.is(err, 'LA_ERR_PEER_IDENTITY_MISMATCH'));
});

test('a peer that never answers fails the tunnel with stage ice in the connect timeout', async (t) => {
  const { tunnels, peer } = pair(t, { drop: () => true });
  const started = Date.now();
  const err = await t.throwsAsync(tunnels.open(peer, TICKET, { host: '127.0.0.1', port: 9 }, 3000));
  t.true(LanternError.is(err, 'LA_ERR_DESTINATION_UNREACHABLE'));
  t.is((err as LanternError).details?.['stage'], 'ice');
  t.true(Date.now() - started < 6000);
});

test('a replayed offer is not answered twice, and one user gets at most its share of connections', async (t) => {
  const { listener, getAddress, sent } = pair(t, { maxPerUser: 1 });
  const { IcePeer } = await import('./ice-peer.js');
  const offerer = new IcePeer('x', { iceServers: [], bindAddress: '127.0.0.1' });
  t.teardown(() => offerer.close());
  const sdp = await offerer.offer(2000);
  const offer: IceSignal = { kind: 'offer', session: randomBytes(16).toString('base64url'), sdp, ticket: TICKET };
  void listener.handle(getAddress, offer);
  for (let i = 0; i < 100 && !sent.some((s) => s.kind === 'answer'); i++) await new Promise((r) => setTimeout(r, 20));
  await listener.handle(getAddress, offer);
  t.is(sent.filter((s) => s.kind === 'answer').length, 1, 'the same session is answered once');
  await listener.handle(getAddress, { ...offer, session: randomBytes(16).toString('base64url') });
  t.is(sent.at(-1)?.kind, 'refused');
  t.is((sent.at(-1) as { reason?: string }).reason, 'busy');
});
