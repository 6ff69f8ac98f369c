import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, get as httpGet, type Server } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { connect, createServer as createTcpServer } from 'node:net';
import { Readable } from 'node:stream';
import test from 'ava';
import { SocksProxyAgent } from 'socks-proxy-agent';
import { ProxyAgent, request } from 'undici';
import { systemClock } from '../../core/clock.js';
import { FaultBoundary } from '../../core/fault-boundary.js';
import { silentLogger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import { generateTicketKey, TicketIssuer, TicketVerifier } from '../../crypto/tickets.js';
import { listen } from '../../net/listen.js';
import { PeerTunnels } from '../../net/tunnel.js';
import { GiveProxy, type GiveProxyOptions } from './give-proxy.js';

const FILE = randomBytes(2 * 1024 * 1024);
const FILE_SHA = createHash('sha256').update(FILE).digest('hex');

async function origin(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === '/file') {
      res.writeHead(200, { 'content-length': FILE.length });
      res.end(FILE);
    } else if (req.url === '/body') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => res.end(`${req.method} ${req.headers['content-length'] ?? '-'} ${req.headers['transfer-encoding'] ?? '-'} ${sha(Buffer.concat(chunks))}`));
    } else {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.method} ${req.url} auth=${req.headers['proxy-authorization'] ?? 'none'}`);
    }
  });
  const a = await listen(server, '127.0.0.1', 0);
  return { url: `http://127.0.0.1:${a.port}`, server };
}

async function setup(t: { teardown(fn: () => unknown): void }, options: Partial<GiveProxyOptions> = {}, faults?: FaultBoundary) {
  const key = generateTicketKey();
  const issuer = new TicketIssuer(key.privateKeyPem);
  const proxy = new GiveProxy(
    { tickets: new TicketVerifier(key.publicKeyPem), clock: systemClock, logger: silentLogger(), ...(faults ? { faults } : {}) },
    { host: '127.0.0.1', port: 0, allowPrivateDestinations: true, maxClients: 100, ...options },
  );
  await proxy.start();
  const o = await origin();
  t.teardown(async () => {
    await proxy.stop(0);
    o.server.close();
  });
  const ticket = issuer.issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 60_000 });
  const basic = `Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}`;
  return { proxy, origin: o.url, ticket, basic, issuer };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function socksGet(proxyUrl: string, target: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    httpGet(target, { agent: new SocksProxyAgent(proxyUrl) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
    }).on('error', reject);
  });
}

async function raw(port: number, data: Buffer | string): Promise<string> {
  const s = connect(port, '127.0.0.1');
  await once(s, 'connect');
  s.write(data);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  await Promise.race([once(s, 'close'), new Promise((r) => setTimeout(r, 2000))]);
  s.destroy();
  return Buffer.concat(chunks).toString('latin1');
}

test('a ticket holder fetches a file through CONNECT, HTTP forward and SOCKS5', async (t) => {
  const { proxy, origin: o, ticket, basic } = await setup(t);
  const viaConnect = await request(`${o}/file`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic }) });
  t.is(sha(Buffer.from(await viaConnect.body.arrayBuffer())), FILE_SHA);
  const viaForward = await request(`${o}/file`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic, proxyTunnel: false }) });
  t.is(sha(Buffer.from(await viaForward.body.arrayBuffer())), FILE_SHA);
  const echo = await request(`${o}/echo`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic, proxyTunnel: false }) });
  t.is(await echo.body.text(), 'GET /echo auth=none', 'the ticket is not passed on to the destination');
  const viaSocks = await socksGet(`socks5://ticket:${encodeURIComponent(ticket)}@${proxy.address.host}:${proxy.address.port}`, `${o}/file`);
  t.is(sha(viaSocks.body), FILE_SHA);
  const stats = proxy.stats();
  t.is(stats.tunnelsServed >= 3, true);
  t.true(stats.bytesRelayed >= 3 * FILE.length);
});

test('request bodies go through the HTTP forward intact, with a length or chunked', async (t) => {
  const { proxy, origin: o, basic } = await setup(t);
  const dispatcher = new ProxyAgent({ uri: proxy.url, token: basic, proxyTunnel: false });
  const body = randomBytes(300 * 1024);
  const sized = await request(`${o}/body`, { method: 'POST', body, dispatcher });
  t.is(await sized.body.text(), `POST ${body.length} - ${sha(body)}`);
  const chunked = await request(`${o}/body`, { method: 'PUT', body: Readable.from([body.subarray(0, 1000), body.subarray(1000)]), dispatcher });
  t.is(await chunked.body.text(), `PUT - chunked ${sha(body)}`);
});

test('without a valid ticket every protocol gets what nginx answers (a plaintext port)', async (t) => {
  const { proxy, origin: o, issuer, basic } = await setup(t);
  const port = proxy.address.port;
  const plainGet = await raw(port, 'GET / HTTP/1.1\r\nHost: example.org\r\n\r\n');
  t.regex(plainGet, /^HTTP\/1\.1 404 Not Found\r\nServer: nginx\r\nDate: .*\r\nContent-Type: text\/html\r\nContent-Length: 146\r\nConnection: keep-alive\r\n/);
  t.regex(plainGet, /<center>nginx<\/center>/);
  t.notRegex(plainGet, /proxy/i);
  t.regex(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 400 Bad Request/, 'nginx refuses CONNECT');
  t.regex(await raw(port, `GET ${o}/file HTTP/1.1\r\nHost: x\r\n\r\n`), /^HTTP\/1\.1 404 Not Found/);
  t.regex(await raw(port, Buffer.from([5, 1, 0])), /^HTTP\/1\.1 400 Bad Request/, 'SOCKS5 without username/password');
  const forged = new TicketIssuer(generateTicketKey().privateKeyPem).issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 60_000 });
  const expired = issuer.issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() - 1 });
  for (const bad of [forged, expired]) {
    const token = `Basic ${Buffer.from(`ticket:${bad}`).toString('base64')}`;
    t.regex(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${token}\r\n\r\n`), /^HTTP\/1\.1 400 Bad Request/);
    const socks = await socksGet(`socks5://ticket:${encodeURIComponent(bad)}@127.0.0.1:${port}`, `${o}/file`).catch((e: Error) => e);
    t.true(socks instanceof Error, 'SOCKS5 with a bad ticket gets nothing usable');
  }
  // A valid ticket in a Basic credential spelled with junk Node's decoder would skip: not the credential.
  t.regex(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic}\r\n\r\n`), /^HTTP\/1\.1 200/, 'the credential as issued opens a tunnel');
  const spelled = `${basic.slice(0, 20)}{${basic.slice(20)}`;
  t.regex(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${spelled}\r\n\r\n`), /^HTTP\/1\.1 400 Bad Request/, 'one spelling only');
  t.true(proxy.stats().refused >= 7);
});

test('private destinations are refused unless allowed', async (t) => {
  const { proxy, origin: o, basic, ticket } = await setup(t, { allowPrivateDestinations: false });
  const port = proxy.address.port;
  t.regex(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic}\r\n\r\n`), /^HTTP\/1\.1 403/);
  t.regex(await raw(port, `CONNECT localhost:${o.split(':')[2]} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic}\r\n\r\n`), /^HTTP\/1\.1 403/, 'names that resolve to loopback too');
  const fwd = await request(`${o}/file`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic, proxyTunnel: false }) });
  t.is(fwd.statusCode, 403);
  await fwd.body.dump();
  const socks = await socksGet(`socks5://ticket:${encodeURIComponent(ticket)}@127.0.0.1:${port}`, `${o}/file`).catch((e: Error) => e);
  t.true(socks instanceof Error);
  for (const addr of ['10.1.2.3:80', '[::1]:80', '169.254.1.1:80', '224.0.0.1:80', '[fe80::1]:80']) {
    t.regex(await raw(port, `CONNECT ${addr} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic}\r\n\r\n`), /^HTTP\/1\.1 403/, addr);
  }
});

test('max clients and the shared bandwidth cap hold', async (t) => {
  const { proxy, origin: o, basic } = await setup(t, { maxMbps: 8 });
  const started = performance.now();
  const res = await request(`${o}/file`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic }) });
  const body = Buffer.from(await res.body.arrayBuffer());
  const seconds = (performance.now() - started) / 1000;
  t.is(sha(body), FILE_SHA);
  const mbps = (body.length * 8) / seconds / 1e6;
  t.true(mbps <= 8 * 1.1 && mbps >= 8 * 0.7, `measured ${mbps.toFixed(2)} Mbit/s against a cap of 8`);
  const busy = await setup(t, { maxClients: 1 });
  const held = connect(busy.proxy.address.port, '127.0.0.1');
  await once(held, 'connect');
  held.write(`CONNECT ${busy.origin.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${busy.basic}\r\n\r\n`);
  await once(held, 'data');
  t.regex(await raw(busy.proxy.address.port, `CONNECT ${busy.origin.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${busy.basic}\r\n\r\n`), /^HTTP\/1\.1 503/);
  held.destroy();
});

test('a fault while serving one connection drops that connection only; the proxy keeps serving', async (t) => {
  let armed = true;
  const faults = new FaultBoundary({
    logger: silentLogger(),
    inject: (surface) => {
      if (surface === 'proxy' && armed) {
        armed = false;
        throw new TypeError('injected fault');
      }
    },
  });
  const { proxy, origin: o, basic } = await setup(t, {}, faults);
  const port = proxy.address.port;
  t.is(await raw(port, `CONNECT ${o.slice(7)} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic}\r\n\r\n`), '', 'the faulting connection is closed without an answer');
  t.is(proxy.stats().faults, 1);
  t.is(proxy.stats().activeTunnels, 0);
  const res = await request(`${o}/echo`, { dispatcher: new ProxyAgent({ uri: proxy.url, token: basic }) });
  t.is(res.statusCode, 200);
  await res.body.dump();
});

test('HTTP/2 tunnels cut short by the client keep opening past the peer\'s 1,000-reset limit', async (t) => {
  const identity = new PeerIdentity();
  const { proxy, ticket } = await setup(t, { tls: identity.tlsCredentials(), maxClients: 1000 });
  const echo = createTcpServer((c) => c.pipe(c));
  const target = await listen(echo, '127.0.0.1', 0);
  const tunnels = new PeerTunnels();
  t.teardown(() => {
    tunnels.close();
    echo.close();
  });
  const peer = { ...proxy.address, identityKey: identity.publicKey };
  // 1,500 tunnels, 20 at a time, each closed by the client with a reset (as a browser closing a
  // connection does): one session would be ended by the peer after 1,000 of them.
  let opened = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: 20 }, async () => {
      while (opened < 1500) {
        opened++;
        try {
          const s = await tunnels.open(peer, ticket, { host: target.host, port: target.port });
          t.true('session' in s, 'an HTTP/2 stream');
          s.write('x');
          await once(s, 'data');
          s.destroy();
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    }),
  );
  t.deepEqual(failures, []);
  t.true(proxy.stats().tunnelsServed >= 1500, `served ${proxy.stats().tunnelsServed}`);
});

test('HTTP/2: nginx\'s 64 KiB stream window for everyone, 1 MiB once a session has a tunnel with a ticket', async (t) => {
  const identity = new PeerIdentity();
  const { proxy, basic } = await setup(t, { tls: identity.tlsCredentials() });
  const echo = createTcpServer((c) => c.pipe(c));
  const target = await listen(echo, '127.0.0.1', 0);
  const session: ClientHttp2Session = h2connect(proxy.url.replace(/^http:/, 'https:'), { rejectUnauthorized: false });
  t.teardown(() => {
    session.destroy();
    echo.close();
  });
  session.on('error', () => undefined);
  await once(session, 'remoteSettings');
  // A prober's request: the decoy answers it, and the window stays nginx's.
  const probe = session.request({ ':path': '/' });
  probe.resume();
  await once(probe, 'end');
  t.is(session.remoteSettings.initialWindowSize, 65_536);
  const tunnel = session.request({ ':method': 'CONNECT', ':authority': `${target.host}:${target.port}`, 'proxy-authorization': basic }, { endStream: false });
  const widened = once(session, 'remoteSettings');
  const [headers] = (await once(tunnel, 'response')) as [Record<string, unknown>];
  t.is(headers[':status'], 200);
  await Promise.race([widened, new Promise((r) => setTimeout(r, 5000))]);
  t.is(session.remoteSettings.initialWindowSize, 1024 * 1024, 'SETTINGS after the accepted tunnel');
  // The stream opened before the change carries more than the old window, both ways.
  tunnel.write(Buffer.alloc(768 * 1024, 1));
  let echoed = 0;
  tunnel.on('data', (c: Buffer) => (echoed += c.length));
  while (echoed < 768 * 1024) await once(tunnel, 'data');
  t.is(echoed, 768 * 1024);
  // A request the decoy answers on this session is closed once answered, its body (more than the
  // window) not held: nothing beyond the tunnels' windows stays buffered.
  const post = session.request({ ':method': 'POST', ':path': '/' }, { endStream: false });
  post.resume();
  post.on('error', () => undefined);
  post.end(Buffer.alloc(3 * 1024 * 1024, 2));
  const closed = await Promise.race([once(post, 'close').then(() => true), new Promise((r) => setTimeout(() => r(false), 5000))]);
  t.true(closed, 'the decoy stream is closed once answered');
  t.true(post.bufferSize > 0, 'before the whole body went out');
  tunnel.destroy();
});
