import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { TestFn } from 'ava';
import { RawPeer } from '../helpers/peerjs-client.js';

/**
 * Black-box conformance of a PeerJS signaling broker over real sockets, as PeerJS 1.5.5 clients
 * see it (../shared/notes/peerjs-protocol.md). It takes a broker URL, so the same suite runs against
 * ours and against the official peer@1.0.2 server. The [improvement] checks are for what ours does
 * better: with `improvements: 'expect-failure'` they are registered as failing tests (the official
 * server fails each of them, which also shows that they can fail).
 */
export interface BrokerTarget {
  /** The WebSocket base, ending with the clients' `path`, e.g. `ws://127.0.0.1:9000/`. */
  wsBase: string;
  /** The same for HTTP, e.g. `http://127.0.0.1:9000/`. */
  httpBase: string;
  key: string;
  expireTimeoutMs: number;
  aliveTimeoutMs: number;
  concurrentLimit: number;
  /** Trust this CA for wss:// and https://. */
  ca?: string;
  /** Our limits, for the [improvement] checks. */
  limits?: { perIdMessages: number; maxFrameBytes: number };
}

const ERR = {
  missing: 'No id, token, or key supplied to websocket server',
  key: 'Invalid key provided',
  limit: 'Server has reached its concurrent user limit',
};

const rid = (prefix: string) => `${prefix}-${randomBytes(6).toString('hex')}`;

export function peerjsConformance(test: TestFn, target: () => BrokerTarget, label: string, improvements: 'expect-pass' | 'expect-failure'): void {
  const peers: RawPeer[] = [];
  const connect = (id: string, token = 'tok', o: { key?: string; heartbeatMs?: number; raw?: string } = {}) => {
    const t = target();
    const url = o.raw ?? `${t.wsBase}peerjs?key=${encodeURIComponent(o.key ?? t.key)}&id=${encodeURIComponent(id)}&token=${encodeURIComponent(token)}&version=1.5.5`;
    const peer = new RawPeer(url, { ...(o.heartbeatMs !== undefined ? { heartbeatMs: o.heartbeatMs } : {}), ...(t.ca ? { ca: t.ca } : {}) });
    peers.push(peer);
    return peer;
  };
  const registered = async (id: string, token = 'tok') => {
    const p = connect(id, token);
    await p.next((f) => f['type'] === 'OPEN');
    return p;
  };
  const get = (path: string) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const t = target();
      const url = new URL(path, t.httpBase);
      const mod = url.protocol === 'https:' ? import('node:https') : Promise.resolve({ request });
      void mod.then((m) =>
        m
          .request(url, { method: 'GET', headers: { origin: 'http://page.example' }, ...(t.ca ? { ca: t.ca } : {}) }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
          })
          .on('error', reject)
          .end(),
      );
    });
  test.afterEach.always(() => {
    for (const p of peers.splice(0)) p.close();
  });

  // Serial: the concurrent-limit and liveness checks count every client of the broker.
  test.serial(`${label}: OPEN on registration; GET {key}/id draws a UUID`, async (t) => {
    const a = connect(rid('a'));
    t.deepEqual(await a.next(() => true), { type: 'OPEN' });
    const id = await get(`${target().key}/id`);
    t.is(id.status, 200);
    t.regex(id.body, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    t.truthy(id.headers['access-control-allow-origin'], 'browsers may read it (CORS)');
    t.is((await get(`${target().key}/peers`)).status, 401, 'no discovery unless allowed');
  });

  test.serial(`${label}: missing parameters and a wrong key get the official ERROR texts, then close`, async (t) => {
    const base = `${target().wsBase}peerjs`;
    for (const query of [`?key=${target().key}&token=x`, `?key=${target().key}&id=${rid('x')}`, `?id=${rid('x')}&token=x`, `?key=${target().key}&id=&token=x`]) {
      const p = connect('', '', { raw: `${base}${query}` });
      t.deepEqual(await p.next(() => true), { type: 'ERROR', payload: { msg: ERR.missing } }, query);
      await p.closed;
    }
    const wrong = connect(rid('k'), 'tok', { key: 'not-the-key' });
    t.deepEqual(await wrong.next(() => true), { type: 'ERROR', payload: { msg: ERR.key } });
    await wrong.closed;
  });

  test.serial(`${label}: an id held by another token is ID-TAKEN`, async (t) => {
    const id = rid('taken');
    await registered(id, 'first');
    const second = connect(id, 'second');
    t.deepEqual(await second.next(() => true), { type: 'ID-TAKEN', payload: { msg: 'ID is taken' } });
    await second.closed;
  });

  test.serial(`${label}: OFFER, ANSWER and CANDIDATE are relayed with src set to the sender, extra fields dropped, payload untouched`, async (t) => {
    const [ia, ib] = [rid('a'), rid('b')];
    const a = await registered(ia);
    const b = await registered(ib);
    const payload = { sdp: { type: 'offer', sdp: 'v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n' }, type: 'data', connectionId: 'dc_x', nested: [1, { deep: true }] };
    a.send({ type: 'OFFER', src: 'SPOOF', dst: ib, payload, extra: 'dropped' });
    t.deepEqual(await b.next((f) => f['type'] === 'OFFER'), { type: 'OFFER', src: ia, dst: ib, payload });
    b.send({ type: 'ANSWER', dst: ia, payload: { sdp: { type: 'answer', sdp: 'x' }, type: 'data', connectionId: 'dc_x' } });
    t.like(await a.next((f) => f['type'] === 'ANSWER'), { src: ib, dst: ia });
    a.send({ type: 'CANDIDATE', dst: ib, payload: { candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 9 typ host' }, type: 'data', connectionId: 'dc_x' } });
    t.like(await b.next((f) => f['type'] === 'CANDIDATE'), { src: ia });
    a.send({ type: 'CANDIDATE', dst: ia, payload: 'to myself' });
    t.like(await a.next((f) => f['type'] === 'CANDIDATE'), { src: ia, dst: ia, payload: 'to myself' }, 'a message to oneself comes back');
  });

  test.serial(`${label}: unknown types and frames without dst are not delivered; the socket keeps working`, async (t) => {
    const [ia, ib] = [rid('a'), rid('b')];
    const a = await registered(ia);
    const b = await registered(ib);
    a.send({ type: 'FOO', dst: ib, payload: 1 });
    a.send({ type: 'OFFER', payload: 2 });
    a.send({ type: 'CANDIDATE', dst: ib, payload: 3 });
    const got = await b.next((f) => f['type'] === 'CANDIDATE');
    t.is(got['payload'], 3);
    t.deepEqual(b.frames.map((f) => f['type']), ['OPEN', 'CANDIDATE']);
  });

  test.serial(`${label}: signaling for an absent id is queued and delivered in order after its OPEN`, async (t) => {
    const [ia, later] = [rid('a'), rid('later')];
    const a = await registered(ia);
    a.send({ type: 'OFFER', dst: later, payload: 1 });
    a.send({ type: 'CANDIDATE', dst: later, payload: 2 });
    await new Promise((r) => setTimeout(r, 200));
    const b = connect(later);
    await b.next((f) => f['payload'] === 2);
    t.deepEqual(b.frames.map((f) => [f['type'], f['src'], f['payload']]), [['OPEN', undefined, undefined], ['OFFER', ia, 1], ['CANDIDATE', ia, 2]]);
  });

  test.serial(`${label}: an id that never comes gives each sender one EXPIRE after the expire timeout`, async (t) => {
    const [ia, ic, absent] = [rid('a'), rid('c'), rid('absent')];
    const a = await registered(ia);
    const c = await registered(ic);
    const sent = Date.now();
    a.send({ type: 'OFFER', dst: absent, payload: 1 });
    a.send({ type: 'CANDIDATE', dst: absent, payload: 2 });
    c.send({ type: 'OFFER', dst: absent, payload: 3 });
    const { expireTimeoutMs } = target();
    t.deepEqual(await a.next((f) => f['type'] === 'EXPIRE', expireTimeoutMs + 3000), { type: 'EXPIRE', src: absent, dst: ia });
    const after = Date.now() - sent;
    t.true(after >= expireTimeoutMs - 50 && after <= expireTimeoutMs + 2000, `EXPIRE after ${after} ms`);
    await c.next((f) => f['type'] === 'EXPIRE');
    await new Promise((r) => setTimeout(r, 1200));
    t.is(a.frames.filter((f) => f['type'] === 'EXPIRE').length, 1, 'one EXPIRE per sender');
    // The queue is gone: the id registering now gets nothing old.
    const late = await registered(absent);
    await new Promise((r) => setTimeout(r, 200));
    t.deepEqual(late.frames, [{ type: 'OPEN' }]);
  });

  test.serial(`${label}: HEARTBEAT keeps a client; a silent one is closed after the alive timeout`, async (t) => {
    const { aliveTimeoutMs } = target();
    const silent = connect(rid('silent'), 'tok', { heartbeatMs: 0 });
    await silent.next((f) => f['type'] === 'OPEN');
    const beating = await registered(rid('beating'));
    const opened = Date.now();
    const { at } = await silent.closed;
    t.true(at - opened >= aliveTimeoutMs - 100 && at - opened <= aliveTimeoutMs + 1500, `closed after ${at - opened} ms`);
    t.is(beating.socket.readyState, beating.socket.OPEN);
  });

  test.serial(`${label}: beyond the concurrent limit, the official ERROR text`, async (t) => {
    await new Promise((r) => setTimeout(r, 300)); // earlier tests' sockets are gone
    const { concurrentLimit } = target();
    const held = await Promise.all(Array.from({ length: concurrentLimit }, (_, i) => connect(rid(`c${i}`))));
    await Promise.all(held.map((p) => p.next(() => true)));
    const over = connect(rid('over'));
    t.deepEqual(await over.next(() => true), { type: 'ERROR', payload: { msg: ERR.limit } });
  });

  const limits = () => target().limits ?? { perIdMessages: 64, maxFrameBytes: 64 * 1024 };
  const improved = improvements === 'expect-pass' ? test.serial : test.serial.failing;

  improved(`${label}: [improvement] a frame that is not JSON gets an ERROR, and the socket keeps relaying`, async (t) => {
    const [ia, ib] = [rid('a'), rid('b')];
    const a = await registered(ia);
    const b = await registered(ib);
    a.send('this is { not json');
    t.like(await a.next((f) => f['type'] === 'ERROR'), { type: 'ERROR' });
    a.send({ type: 'OFFER', dst: ib, payload: 'still works' });
    t.like(await b.next((f) => f['type'] === 'OFFER'), { payload: 'still works' });
  });

  improved(`${label}: [improvement] a frame over the cap gets an ERROR and is dropped`, async (t) => {
    const [ia, ib] = [rid('a'), rid('b')];
    const a = await registered(ia);
    const b = await registered(ib);
    a.send({ type: 'OFFER', dst: ib, payload: 'x'.repeat(limits().maxFrameBytes) });
    t.like(await a.next((f) => f['type'] === 'ERROR'), { type: 'ERROR' });
    a.send({ type: 'OFFER', dst: ib, payload: 'small' });
    await b.next((f) => f['type'] === 'OFFER');
    t.deepEqual(b.frames.filter((f) => f['type'] === 'OFFER').map((f) => f['payload']), ['small']);
  });

  improved(`${label}: [improvement] a reconnect with the same id and token gets OPEN, the old socket is closed, traffic goes to the new one`, async (t) => {
    const [ia, ib] = [rid('a'), rid('b')];
    const old = await registered(ia, 'same');
    const b = await registered(ib);
    const fresh = connect(ia, 'same');
    t.deepEqual(await fresh.next(() => true), { type: 'OPEN' });
    await Promise.race([old.closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the old socket stayed open')), 1000))]);
    b.send({ type: 'OFFER', dst: ia, payload: 'to the new socket' });
    t.like(await fresh.next((f) => f['type'] === 'OFFER'), { payload: 'to the new socket' });
  });

  improved(`${label}: [improvement] queues are bounded per id; a client's EXPIRE is not relayed`, async (t) => {
    const { perIdMessages } = limits();
    const [ia, ib, absent] = [rid('a'), rid('b'), rid('absent')];
    const a = await registered(ia);
    const b = await registered(ib);
    for (let i = 0; i < perIdMessages + 20; i++) a.send({ type: 'CANDIDATE', dst: absent, payload: i });
    a.send({ type: 'EXPIRE', dst: ib });
    await new Promise((r) => setTimeout(r, 300));
    const late = connect(absent);
    await late.next((f) => f['payload'] === perIdMessages - 1);
    await new Promise((r) => setTimeout(r, 200));
    t.is(late.frames.filter((f) => f['type'] === 'CANDIDATE').length, perIdMessages);
    t.false(b.frames.some((f) => f['type'] === 'EXPIRE'), 'clients cannot send EXPIRE');
  });

  improved(`${label}: [improvement] ids the PeerJS client would refuse are refused`, async (t) => {
    const bad = connect('bad id!');
    t.like(await bad.next(() => true), { type: 'ERROR' });
    await bad.closed;
  });
}
