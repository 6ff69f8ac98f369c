import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import test from 'ava';
import * as dnsPacket from 'dns-packet';
import type { Packet } from 'dns-packet';
import { systemClock, type Clock } from '../../core/clock.js';
import { applyVerdict, nextPeerRecord } from './peer-admission.js';
import { createLogger } from '../../core/logger.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import type { PeerRecord } from '../../storage/server-store.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { answerQuery, encodeResponse, type ZoneOptions } from './dns-answer.js';
import { clientNetwork, DnsServer } from './dns-server.js';
import { requireTool } from '../../testing/helpers/required-tools.js';

const ZONE: ZoneOptions = { zone: 'lantern.test', ttlSeconds: 30, maxAnswers: 3 };
const KEY = Buffer.alloc(32, 7).toString('base64url');

function peer(host: string, state: PeerRecord['state'], port = 8443): PeerRecord {
  return { peerId: randomUUID(), userId: randomUUID(), deviceId: 1, host, port, protocols: ['connect'], identityKey: KEY, state, registeredAt: 0, expiresAt: 1e15 };
}

/** What the tests read of a decoded answer. */
interface Reply {
  id: number;
  rcode: string;
  flag_aa: boolean;
  flag_tc: boolean;
  answers: Array<{ type: string; ttl: number; data: unknown }>;
  authorities: Array<{ type: string }>;
}
const decode = (b: Buffer) => dnsPacket.decode(b) as unknown as Reply;

const query = (name: string, type: string, over: Partial<Packet> = {}): Packet =>
  ({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, opcode: 'QUERY', questions: [{ name, type, class: 'IN' }], ...over }) as Packet;

/** Through the real encoder and decoder, as a client would see it. */
function ask(q: Packet, peers: PeerRecord[], rotation = 0, transport: 'udp' | 'tcp' = 'udp') {
  const decodedQuery = dnsPacket.decode(dnsPacket.encode(q));
  const response = answerQuery(decodedQuery, { peers, rotation, now: 1_700_000_000_000 }, ZONE)!;
  return decode(encodeResponse(response, decodedQuery, transport));
}

test('roundrobin answers verified peers only, once per address, rotating, TTL 30', (t) => {
  const v4 = [peer('192.0.2.1', 'verified'), peer('192.0.2.2', 'verified'), peer('192.0.2.3', 'verified'), peer('192.0.2.4', 'verified')];
  const others = [peer('198.51.100.1', 'candidate'), peer('198.51.100.2', 'paused'), peer('192.0.2.1', 'verified', 9000), peer('2001:db8::1', 'verified')];
  const a = ask(query('RoundRobin.Lantern.Test', 'A'), [...v4, ...others]);
  t.is(a.rcode, 'NOERROR');
  t.true(a.flag_aa);
  t.is(a.id, 4242);
  t.deepEqual(a.answers.map((r) => r.data), ['192.0.2.1', '192.0.2.2', '192.0.2.3'], 'at most maxAnswers, each address once, no unverified peer');
  t.true(a.answers.every((r) => r.ttl === 30 && r.type === 'A'));
  t.deepEqual(ask(query('roundrobin.lantern.test', 'A'), [...v4, ...others], 1).answers.map((r) => r.data), ['192.0.2.2', '192.0.2.3', '192.0.2.4'], 'the subset rotates');
  t.deepEqual(ask(query('roundrobin.lantern.test', 'AAAA'), [...v4, ...others]).answers.map((r) => r.data), ['2001:db8::1']);
  const srv = ask(query('_proxy._tcp.roundrobin.lantern.test', 'SRV'), [peer('192.0.2.9', 'verified', 8443), peer('192.0.2.9', 'candidate', 9443)]);
  t.deepEqual(srv.answers.map((r) => (r.data as { port: number }).port), [8443]);
  t.regex((srv.answers![0].data as { target: string }).target, /^[0-9a-f-]{36}\.peers\.lantern\.test$/);
});

test('peer names answer for every registered peer; unknown names are NXDOMAIN; names outside the zone are REFUSED', (t) => {
  const candidate = peer('198.51.100.7', 'candidate');
  t.deepEqual(ask(query(`${candidate.peerId}.peers.lantern.test`, 'A'), [candidate]).answers.map((r) => r.data), ['198.51.100.7']);
  const nodata = ask(query(`${candidate.peerId}.peers.lantern.test`, 'AAAA'), [candidate]);
  t.is(nodata.rcode, 'NOERROR');
  t.deepEqual(nodata.answers, []);
  t.is(nodata.authorities![0].type, 'SOA', 'negative answers carry the SOA (for negative caching)');
  const nx = ask(query(`${randomUUID()}.peers.lantern.test`, 'A'), [candidate]);
  t.is(nx.rcode, 'NXDOMAIN');
  t.true(nx.flag_aa);
  t.is(ask(query('www.lantern.test', 'A'), []).rcode, 'NXDOMAIN');
  const empty = ask(query('roundrobin.lantern.test', 'A'), [candidate]);
  t.is(empty.rcode, 'NOERROR', 'the round robin exists even when empty');
  t.deepEqual(empty.answers, []);
  const refused = ask(query('example.com', 'A'), [candidate]);
  t.is(refused.rcode, 'REFUSED');
  t.false(refused.flag_aa);
  t.is(ask(query('notlantern.test', 'A'), []).rcode, 'REFUSED', 'a suffix without the dot is outside the zone');
  t.is(ask(query('lantern.test', 'SOA'), []).answers![0].type, 'SOA');
  t.is(ask(query('roundrobin.lantern.test', 'A', { flags: 2 << 11 }), []).rcode, 'NOTIMP', 'opcode STATUS');
});

test('an answer too big for UDP is truncated (TC) and complete over TCP', (t) => {
  const many = Array.from({ length: 40 }, (_, i) => peer(`2001:db8::${i + 1}`, 'verified'));
  const o = { ...ZONE, maxAnswers: 40 };
  const q = dnsPacket.decode(dnsPacket.encode(query('roundrobin.lantern.test', 'AAAA')));
  const response = answerQuery(q, { peers: many, rotation: 0, now: 0 }, o)!;
  const udp = decode(encodeResponse(response, q, 'udp'));
  t.true(udp.flag_tc);
  t.deepEqual(udp.answers, []);
  const tcp = decode(encodeResponse(response, q, 'tcp'));
  t.false(tcp.flag_tc);
  t.is(tcp.answers.length, 40);
});

async function startDns(
  t: { teardown(fn: () => Promise<void>): void },
  peers: Array<Omit<PeerRecord, 'peerId' | 'registeredAt' | 'expiresAt' | 'state'> & { verified: boolean }>,
  limit: { ratePerSecond: number; onLimited(outcome: 'truncated' | 'dropped'): void; clock: Clock } | undefined = undefined,
) {
  const store = new MemoryServerStore();
  await store.open();
  const ids: string[] = [];
  for (const p of peers) {
    const { verified, ...input } = p;
    const rec = await store.registerPeer(input, (prev) => nextPeerRecord(prev, input, Date.now(), 3_600_000, randomUUID));
    if (verified) await store.recordVerdict(rec.peerId, Date.now(), (p) => applyVerdict(p, 'v', { ok: true, status: 'ok', at: Date.now() }, { peerPauseAfterMs: 600_000, verdictTtlMs: 3_600_000, verifierQuorum: 1 }));
    ids.push(rec.peerId);
  }
  const dns = new DnsServer(
    { store, clock: limit?.clock ?? systemClock, logger: createLogger({ level: 'silent' }), ...(limit ? { onLimited: limit.onLimited } : {}) },
    { host: '127.0.0.1', port: 0, ...ZONE, snapshotMs: 1000, ratePerSecond: limit?.ratePerSecond ?? 0 },
  );
  await dns.start();
  t.teardown(() => dns.stop());
  return { dns, ids };
}

const base = { userId: randomUUID(), deviceId: 1, protocols: ['connect' as const], identityKey: KEY };

test("Node's DNS resolver (c-ares) gets the round robin over UDP and the error codes", async (t) => {
  const { dns, ids } = await startDns(t, [
    { ...base, host: '192.0.2.10', port: 1, verified: true },
    { ...base, userId: randomUUID(), host: '198.51.100.10', port: 2, verified: false },
  ]);
  const resolver = new Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([`127.0.0.1:${dns.address.port}`]);
  t.deepEqual(await resolver.resolve4('roundrobin.lantern.test', { ttl: true }), [{ address: '192.0.2.10', ttl: 30 }]);
  t.deepEqual(await resolver.resolve4(`${ids[1]}.peers.lantern.test`), ['198.51.100.10'], 'a candidate has its own name, not a place in the round robin');
  await t.throwsAsync(resolver.resolve4(`${randomUUID()}.peers.lantern.test`), { code: 'ENOTFOUND' });
  await t.throwsAsync(resolver.resolve4('example.com'), { code: 'EREFUSED' });
  await t.throwsAsync(resolver.resolve6('roundrobin.lantern.test'), { code: 'ENODATA' });
  const srv = await resolver.resolveSrv('_proxy._tcp.roundrobin.lantern.test');
  t.deepEqual(srv.map((r) => [r.name, r.port]), [[`${ids[0]}.peers.lantern.test`, 1]]);
});

test('malformed packets get FORMERR or nothing, and TCP serves several queries on one connection', async (t) => {
  const { dns } = await startDns(t, [{ ...base, host: '192.0.2.20', port: 1, verified: true }]);
  const udp = createSocket('udp4');
  t.teardown(() => new Promise<void>((r) => udp.close(() => r())));
  const reply = new Promise<Buffer>((resolve) => udp.once('message', resolve));
  // A readable header (id 0x1234, a query) followed by a question that runs off the end.
  udp.send(Buffer.from([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, 0x61]), dns.address.port, '127.0.0.1');
  const formerr = decode(await reply);
  t.is(formerr.id, 0x1234);
  t.is(formerr.rcode, 'FORMERR');

  const socket = connect(dns.address.port, '127.0.0.1');
  t.teardown(async () => void socket.destroy());
  const frames = [query('roundrobin.lantern.test', 'A', { id: 1 }), query('example.org', 'A', { id: 2 })].map((q) => {
    const body = dnsPacket.encode(q);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(body.length);
    return Buffer.concat([len, body]);
  });
  socket.write(Buffer.concat(frames));
  let data = Buffer.alloc(0);
  const answers: Reply[] = [];
  await new Promise<void>((resolve) =>
    socket.on('data', (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      while (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
        answers.push(decode(data.subarray(2, 2 + data.readUInt16BE(0))));
        data = data.subarray(2 + data.readUInt16BE(0));
      }
      if (answers.length === 2) resolve();
    }),
  );
  t.deepEqual(
    answers.map((a) => [a.id, a.rcode, a.answers.map((r) => r.data)]),
    [
      [1, 'NOERROR', ['192.0.2.20']],
      [2, 'REFUSED', []],
    ],
  );
});

const run = promisify(execFile);

test('dig (dnsutils) reads the zone over UDP and TCP', async (t) => {
  await requireTool('dig');
  const { dns } = await startDns(t, [{ ...base, host: '192.0.2.30', port: 1, verified: true }]);
  const dig = (...args: string[]) => run('dig', ['@127.0.0.1', '-p', String(dns.address.port), '+tries=1', '+time=2', ...args]).then((r) => r.stdout);
  t.is((await dig('+short', 'roundrobin.lantern.test', 'A')).trim(), '192.0.2.30');
  t.is((await dig('+short', '+tcp', 'roundrobin.lantern.test', 'A')).trim(), '192.0.2.30');
  t.regex(await dig('roundrobin.lantern.test', 'A'), /roundrobin\.lantern\.test\.\s+30\s+IN\s+A\s+192\.0\.2\.30/);
  t.regex(await dig('nothing.lantern.test', 'A'), /status: NXDOMAIN/);
  t.regex(await dig('example.com', 'A'), /status: REFUSED/);
});

test('client networks for the rate limit: IPv4 /24, IPv6 /56, mapped IPv4 as IPv4', (t) => {
  t.is(clientNetwork('192.0.2.77'), '192.0.2.0/24');
  t.is(clientNetwork('::ffff:192.0.2.77'), '192.0.2.0/24');
  t.is(clientNetwork('2001:db8:aa:bbcc::1'), '2001:db8:aa:bb00::/56');
  t.is(clientNetwork('2001:db8:aa:bb00:1:2:3:4'), clientNetwork('2001:db8:aa:bbff::9'), 'one /56');
  t.not(clientNetwork('2001:db8:aa:bb00::1'), clientNetwork('2001:db8:aa:cc00::1'));
  t.is(clientNetwork('::1'), '::/56');
});

test('UDP answers are rate limited per client network: over the limit half get TC, the rest nothing; TCP and other networks still answered', async (t) => {
  const limited: string[] = [];
  // A fake clock: no tokens come back during the test, so the counts are exact.
  const clock = new FakeClock(Date.now());
  const { dns } = await startDns(t, [{ ...base, host: '192.0.2.10', port: 1, verified: true }], { ratePerSecond: 5, onLimited: (o) => limited.push(o), clock });
  // 40 queries at once from 127.0.0.1: a burst of 10 (twice the rate) is answered in full.
  const flood = async (bindTo: string, count: number) => {
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, bindTo, () => resolve()));
    const replies: Reply[] = [];
    socket.on('message', (m) => replies.push(decode(m)));
    for (let i = 0; i < count; i++) socket.send(dnsPacket.encode(query('roundrobin.lantern.test', 'A', { id: i })), dns.address.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 500));
    socket.close();
    return replies;
  };
  const replies = await flood('127.0.0.1', 40);
  const full = replies.filter((r) => !r.flag_tc);
  const truncated = replies.filter((r) => r.flag_tc);
  t.is(full.length, 10, 'a burst of twice the rate is answered in full');
  t.true(full.every((r) => r.answers.length === 1));
  t.is(truncated.length, 15, 'every second query over the limit gets TC');
  t.true(truncated.every((r) => r.answers.length === 0 && r.rcode === 'NOERROR'));
  t.is(replies.length + limited.filter((o) => o === 'dropped').length, 40, 'every query over the limit is counted');
  t.is(limited.filter((o) => o === 'truncated').length, truncated.length);
  // Another /24 (all of 127/8 is loopback) has its own budget.
  const other = await flood('127.0.1.1', 3);
  t.is(other.filter((r) => !r.flag_tc).length, 3);
  // A second later the network has 5 more tokens.
  clock.advance(1000);
  t.is((await flood('127.0.0.1', 5)).filter((r) => !r.flag_tc).length, 5);
  // TCP is not limited: the truncated clients' retry is answered.
  const tcp = await new Promise<Reply>((resolve, reject) => {
    const s = connect(dns.address.port, '127.0.0.1');
    const q = dnsPacket.encode(query('roundrobin.lantern.test', 'A'));
    const length = Buffer.alloc(2);
    length.writeUInt16BE(q.length);
    s.write(Buffer.concat([length, q]));
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(decode(d.subarray(2)));
    });
    s.once('error', reject);
  });
  t.is(tcp.answers.length, 1);
});
