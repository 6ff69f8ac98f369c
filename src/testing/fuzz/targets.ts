import { randomUUID } from 'node:crypto';
import { createConnection, connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import WebSocket from 'ws';
import { systemClock } from '../../core/clock.js';
import { errorCatalogue, isErrorCode, LanternError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import { RequestSigner } from '../../crypto/request-signature.js';
import { ticketAuthorization } from '../../net/tunnel.js';
import { generateTicketKey, TicketIssuer, TicketVerifier } from '../../crypto/tickets.js';
import { httpHead, type HttpHead } from '../../net/http-head.js';
import type { ParseStep } from '../../net/handshake-reader.js';
import { socksGreeting, socksRequest, socksUserPass } from '../../net/socks5.js';
import { ControlAnswer } from '../../protocol/messages.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../protocol/version.js';
import { GiveProxy } from '../../roles/give/give-proxy.js';
import { Authenticator } from '../../roles/server/authenticator.js';
import { rawQuestionsEnd } from '../../roles/server/dns-server.js';
import { StunServer } from '../../roles/server/stun-server.js';
import { bindingRequest, parseBindingRequest, parseBindingSuccess } from '../../protocol/stun.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import { dnsQuery, rcodeOf, tcpExchange, udpExchange } from '../helpers/dns-client.js';
import { startInProcessServer, type InProcessServer } from '../helpers/in-process-server.js';

/**
 * Fuzz and property tests of every wire surface. Each target sets up the real component (in this
 * process, on loopback), states one property over random or mutated inputs, and checks afterwards
 * that the component is alive and lost nothing. `fuzz.test.ts` runs each briefly in `npm test`;
 * `npm run fuzz -- --seconds N` runs them for longer (scripts/fuzz.ts).
 */
export interface FuzzTarget<C = unknown> {
  name: string;
  /** Runs in `npm test` (each run is a property check). */
  runs: number;
  setup(): Promise<C>;
  property(ctx: C): fc.IAsyncPropertyWithHooks<unknown[]> | fc.IPropertyWithHooks<unknown[]>;
  /** After the runs: the component is alive and nothing stored was lost (throws otherwise). */
  after(ctx: C): Promise<void>;
  teardown(ctx: C): Promise<void>;
}

const fail = (message: string): never => {
  throw new Error(message);
};

/** Field names of the wire protocol, so that random objects often look like requests. */
const FIELDS = [
  'user', 'password', 'csr', 'register', 'deviceId', 'id', 'to', 'payload', 'type', 'messages', 'ids', 'publicKey',
  'port', 'protocols', 'identityKey', 'publicAddr', 'ok', 'reason', 'aud', 'registrationId', 'signedPreKey',
  'kyberLastResort', 'preKeys', 'kyberPreKeys', 'keyId', 'signature', 'latencyMs', 'throughput', 'devices', 'op', 'name', 'role',
  '__proto__', 'constructor',
];

/** Values that often break parsers: edge numbers, long and odd strings, nested structures. */
const edgyValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(0, -1, 1.5, 2 ** 31, 2 ** 53, -(2 ** 63), 1e308, '', ' ', 'null', '\u0000', '\ud800', '%', '../..', 'A'.repeat(70_000), randomUUID(), 128, 127, 65536),
  fc.string({ unit: 'binary', maxLength: 64 }),
  fc.base64String({ maxLength: 200 }),
);

const requestLike: fc.Arbitrary<unknown> = fc.oneof(
  fc.dictionary(fc.constantFrom(...FIELDS), edgyValue, { maxKeys: 6 }),
  fc.array(fc.dictionary(fc.constantFrom(...FIELDS), edgyValue, { maxKeys: 4 }), { maxLength: 4 }).map((messages) => ({ messages })),
  edgyValue,
);

/** A request body: JSON of a request-like value, or raw bytes. */
const body: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: requestLike.map((v) => Buffer.from(JSON.stringify(v) ?? 'undefined')) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b)) },
);

function checkErrorAnswer(status: number, text: string, what: string): void {
  if (status >= 500) fail(`${what}: answered ${status} ${text.slice(0, 300)}`);
  if (status < 400) return;
  let parsed: { error?: { code?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    return fail(`${what}: ${status} without a JSON error body: ${text.slice(0, 200)}`);
  }
  const code = parsed.error?.code;
  if (!isErrorCode(code) || typeof parsed.error?.message !== 'string') fail(`${what}: unclear error ${text.slice(0, 200)}`);
  if (errorCatalogue[code as keyof typeof errorCatalogue].status !== status) fail(`${what}: ${String(code)} with status ${status}`);
}

// ---------------------------------------------------------------------------------------------
// API bodies, route by route, signed by a real device (so they reach the handlers).

interface ApiCtx {
  srv: InProcessServer;
  mallory: { userId: string; deviceId: number; signer: RequestSigner };
  bob: { userId: string; deviceId: number; signer: RequestSigner };
  kept: string;
}

const ROUTES: Array<[string, (ctx: ApiCtx) => string]> = [
  ['POST', () => '/v1/login'],
  ['POST', () => '/v1/session'],
  ['PUT', () => '/v1/keys'],
  ['GET', () => '/v1/keys/count'],
  ['GET', (c) => `/v1/keys/${c.bob.userId}`],
  ['GET', (c) => `/v1/keys/${c.bob.userId}/1`],
  ['POST', () => '/v1/tickets'],
  ['POST', () => '/v1/peers'],
  ['POST', () => '/v1/peers/heartbeat'],
  ['GET', () => '/v1/peers/self'],
  ['GET', () => '/v1/peers/round-robin'],
  ['POST', () => '/v1/canary'],
  ['GET', () => '/v1/peers'],
  ['POST', () => `/v1/peers/${randomUUID()}/verdict`],
  ['DELETE', () => '/v1/peers'],
  ['GET', () => '/v1/whoami'],
  ['POST', () => '/v1/messages'],
  ['POST', () => '/v1/messages/batch'],
  ['GET', () => '/v1/messages?wait=0&limit=5'],
  ['POST', () => '/v1/messages/ack'],
];

const apiBodies: FuzzTarget<ApiCtx> = {
  name: 'API bodies per route (signed)',
  runs: 120,
  async setup() {
    const srv = await startInProcessServer();
    const mallory = await srv.device(`mallory-${randomUUID().slice(0, 8)}`);
    const bob = await srv.device(`bob-${randomUUID().slice(0, 8)}`);
    const kept = Buffer.from(`keep me ${randomUUID()}`).toString('base64');
    const sent = await srv.signed(mallory, 'POST', '/v1/messages', JSON.stringify({ id: randomUUID(), to: bob.userId, deviceId: bob.deviceId, type: 0, payload: kept }));
    if (sent.status !== 200) fail(`setup send: ${sent.status} ${sent.text}`);
    return { srv, mallory, bob, kept };
  },
  property: (ctx) =>
    fc.asyncProperty(fc.integer({ min: 0, max: ROUTES.length - 1 }), body, async (i, bytes) => {
      const [method, path] = ROUTES[i]!;
      const p = path(ctx);
      const answer = await ctx.srv.signed(ctx.mallory, method, p, method === 'GET' ? '' : bytes);
      checkErrorAnswer(answer.status, answer.text, `${method} ${p} ${bytes.subarray(0, 80).toString('latin1')}`);
    }),
  async after(ctx) {
    const health = await fetch(`${ctx.srv.url}/v1/health`);
    if (health.status !== 200) fail('the server no longer answers');
    const poll = await ctx.srv.signed(ctx.bob, 'GET', '/v1/messages?wait=0&limit=100');
    if (!poll.text.includes(ctx.kept)) fail(`the message queued before fuzzing is gone: ${poll.status} ${poll.text.slice(0, 500)}`);
  },
  teardown: (ctx) => ctx.srv.stop(),
};

// ---------------------------------------------------------------------------------------------
// The Authorization header parser and checks.

interface AuthCtx {
  auth: Authenticator;
  valid: () => string;
}

const authorizationHeader: FuzzTarget<AuthCtx> = {
  name: 'Authorization header (LA1 / LA1S)',
  runs: 400,
  async setup() {
    const store = new MemoryServerStore();
    await store.open();
    const auth = new Authenticator({ store, clock: systemClock });
    const { generateDeviceKey } = await import('../../crypto/x509/device-key.js');
    const key = await generateDeviceKey();
    const userId = randomUUID();
    const device = await store.putDevice(userId, { serial: 'abcdef01', publicKeyPem: key.publicKeyPem, expiresAt: Date.now() + 3600_000 }, Date.now());
    const signer = new RequestSigner({ userId, deviceId: device.deviceId, serial: 'abcdef01', privateKeyPem: key.privateKeyPem });
    // The valid header itself is accepted once (then it is a replay).
    await auth.authenticate({ method: 'GET', path: '/v1/whoami', authorization: signer.authorize('GET', '/v1/whoami', '', Date.now()), body: Buffer.alloc(0) });
    return { auth, valid: () => signer.authorize('GET', '/v1/whoami', '', Date.now()) };
  },
  property: (ctx) =>
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 300 }),
        fc.tuple(fc.constantFrom('LA1 ', 'LA1S ', 'Bearer ', 'LA1  '), fc.array(fc.tuple(fc.constantFrom('u', 'd', 's', 't', 'n', 'sig', 'id', 'mac', '__proto__', ''), edgyValue), { maxLength: 8 })).map(
          ([scheme, fields]) => scheme + fields.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(','),
        ),
        fc.tuple(fc.nat(), fc.string({ minLength: 1, maxLength: 3 })).map(([at, junk]) => ({ at, junk })),
      ),
      async (input) => {
        // A mutation of a fresh valid header: accepted only when it is that header, unchanged.
        let header: string;
        let valid: string | undefined;
        if (typeof input === 'string') header = input;
        else {
          valid = ctx.valid();
          const i = input.at % valid.length;
          header = valid.slice(0, i) + input.junk + valid.slice(i + 1);
        }
        try {
          await ctx.auth.authenticate({ method: 'GET', path: '/v1/whoami', authorization: header, body: Buffer.alloc(0) });
        } catch (err) {
          if (LanternError.is(err) && err.code.startsWith('LA_ERR_AUTH') && err.status === 401) return;
          fail(`${JSON.stringify(header)}: ${String(err)}`);
        }
        if (header !== valid) fail(`accepted ${JSON.stringify(header)}`);
      },
    ),
  async after() {},
  async teardown() {},
};

// ---------------------------------------------------------------------------------------------
// Tickets: only the canonical encoding of a ticket signed by the server verifies.

interface TicketCtx {
  verifier: TicketVerifier;
  ticket: string;
}

const tickets: FuzzTarget<TicketCtx> = {
  name: 'proxy tickets (canonical encoding only)',
  runs: 2000,
  async setup() {
    const key = generateTicketKey();
    const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: randomUUID(), exp: Date.now() + 3600_000 });
    return { verifier: new TicketVerifier(key.publicKeyPem), ticket };
  },
  property: (ctx) =>
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.tuple(fc.nat(), fc.string({ unit: 'binary', minLength: 0, maxLength: 4 }), fc.nat({ max: 3 })).map(([at, insert, drop]) => {
          const i = at % (ctx.ticket.length + 1);
          return ctx.ticket.slice(0, i) + insert + ctx.ticket.slice(i + drop);
        }),
      ),
      (candidate) => {
        if (candidate === ctx.ticket) return;
        try {
          ctx.verifier.verify(candidate, Date.now());
        } catch (err) {
          if (LanternError.is(err) && (err.code === 'LA_ERR_TICKET_INVALID' || err.code === 'LA_ERR_TICKET_EXPIRED')) return;
          fail(`${JSON.stringify(candidate)}: ${String(err)}`);
        }
        fail(`a changed ticket verified: ${JSON.stringify(candidate)}`);
      },
    ),
  async after(ctx) {
    ctx.verifier.verify(ctx.ticket, Date.now());
  },
  async teardown() {},
};

// ---------------------------------------------------------------------------------------------
// SOCKS5 and HTTP heads, split at every byte boundary and as random bytes.

/** Feeds chunks to a parse step as the HandshakeReader does; the value, 'more', or the error code. */
function feed<T>(parse: ParseStep<T>, chunks: Buffer[]): { value: T; used: number } | 'more' | string {
  let buffered = Buffer.alloc(0);
  for (const chunk of chunks) {
    buffered = Buffer.concat([buffered, chunk]);
    try {
      const r = parse(buffered);
      if (r) {
        if (r.used > buffered.length || r.used < 0) fail(`used ${r.used} of ${buffered.length}`);
        return r;
      }
    } catch (err) {
      if (LanternError.is(err, 'LA_ERR_PROTOCOL')) return err.code;
      throw err;
    }
  }
  return 'more';
}

/** Every way to cut `bytes` into 1 to 4 chunks at the given cut points. */
const chunked = (bytes: Buffer, cuts: number[]) => {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
};

const socksMessages = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 8 }).map((m) => ({ step: socksGreeting as ParseStep<unknown>, bytes: Buffer.from([5, m.length, ...m]) })),
  fc.tuple(fc.uint8Array({ maxLength: 255 }), fc.uint8Array({ maxLength: 255 })).map(([u, p]) => ({ step: socksUserPass as ParseStep<unknown>, bytes: Buffer.from([1, u.length, ...u, p.length, ...p]) })),
  fc.tuple(fc.constantFrom(1, 2, 3), fc.constantFrom(1, 3, 4, 9), fc.uint8Array({ minLength: 1, maxLength: 255 }), fc.integer({ min: 0, max: 65535 })).map(([cmd, atyp, addr, port]) => {
    const a = atyp === 1 ? addr.slice(0, 4) : atyp === 4 ? Buffer.concat([Buffer.from(addr), Buffer.alloc(16)]).subarray(0, 16) : Buffer.from([addr.length, ...addr]);
    const p = Buffer.alloc(2);
    p.writeUInt16BE(port);
    return { step: socksRequest as ParseStep<unknown>, bytes: Buffer.from([5, cmd, 0, atyp, ...a, ...p]) };
  }),
);

const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/);
const httpHeads = fc
  .tuple(
    fc.constantFrom('CONNECT', 'GET', 'POST', 'PUT', 'OPTIONS', 'PRI', 'G\u00e9T', ''),
    fc.oneof(fc.constantFrom('example.org:443', '[::1]:80', 'http://example.org/x?y', '/', '*', 'a:99999', ''), fc.string({ maxLength: 40 })),
    fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 ', 'http/1.1'),
    fc.array(fc.tuple(headerName, fc.string({ maxLength: 40 })), { maxLength: 6 }),
    fc.constantFrom('\r\n', '\n'),
  )
  .map(([method, target, version, headers, eol]) => Buffer.from(`${method} ${target} ${version}${eol}${headers.map(([n, v]) => `${n}: ${v}${eol}`).join('')}${eol}`, 'latin1'));

const sameResult = (a: unknown, b: unknown) => JSON.stringify(a, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)) === JSON.stringify(b, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v));

const handshakeSplits: FuzzTarget<null> = {
  name: 'SOCKS5 and HTTP proxy heads split at every byte boundary',
  runs: 300,
  async setup() {
    return null;
  },
  property: () =>
    fc.property(
      fc.oneof(
        socksMessages,
        httpHeads.map((bytes) => ({ step: httpHead as ParseStep<unknown>, bytes })),
        fc.uint8Array({ maxLength: 600 }).map((b) => ({ step: [socksGreeting, socksUserPass, socksRequest, httpHead][(b[0] ?? 0) % 4] as ParseStep<unknown>, bytes: Buffer.from(b) })),
      ),
      fc.array(fc.nat(), { maxLength: 3 }),
      ({ step, bytes }, cuts) => {
        const whole = feed(step, [bytes]);
        // Every single split point, and random multi-way splits: the same result.
        for (let i = 0; i <= bytes.length; i++) {
          const split = feed(step, [bytes.subarray(0, i), bytes.subarray(i)]);
          if (!sameResult(split, whole)) fail(`split at ${i} of ${bytes.toString('hex')}: ${JSON.stringify(split)} vs ${JSON.stringify(whole)}`);
        }
        const random = feed(step, chunked(bytes, cuts));
        if (!sameResult(random, whole)) fail(`chunks ${JSON.stringify(cuts)} of ${bytes.toString('hex')}`);
        if (typeof whole === 'object' && step === (httpHead as ParseStep<unknown>)) {
          const head = whole.value as HttpHead;
          if (!/^HTTP|^1\.[01]$/.test(head.version)) fail(`version ${head.version}`);
        }
      },
    ),
  async after() {},
  async teardown() {},
};

// ---------------------------------------------------------------------------------------------
// The give proxy's TLS port: random and mutated bytes, inside TLS and plain, get nginx's answers.

interface GiveCtx {
  proxy: GiveProxy;
  basic: string;
}

const giveWire: FuzzTarget<GiveCtx> = {
  name: 'give proxy port (random and mutated handshakes, inside TLS and plain)',
  runs: 60,
  async setup() {
    const key = generateTicketKey();
    const identity = new PeerIdentity();
    const proxy = new GiveProxy(
      { tickets: new TicketVerifier(key.publicKeyPem, { peer: identity.fingerprint }), clock: systemClock, logger: silentLogger() },
      { host: '127.0.0.1', port: 0, allowPrivateDestinations: false, maxClients: 16, tls: identity.tlsCredentials(), limits: { handshakeTimeoutMs: 300, keepAliveTimeoutMs: 300 } },
    );
    await proxy.start();
    const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: randomUUID(), exp: Date.now() + 3600_000, aud: identity.fingerprint });
    return { proxy, basic: ticketAuthorization(ticket) };
  },
  property: (ctx) =>
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
        httpHeads,
        socksMessages.map((m) => m.bytes),
        fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 3 })).map(([at, junk]) => {
          const valid = Buffer.from(`CONNECT 10.0.0.1:80 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${ctx.basic}\r\n\r\n`);
          const i = at % valid.length;
          return Buffer.concat([valid.subarray(0, i), junk, valid.subarray(i + 1)]);
        }),
      ),
      fc.boolean(),
      async (bytes, insideTls) => {
        const answer = await exchange(ctx.proxy.address.port, bytes, 1500, insideTls);
        if (/^HTTP\/1\.1 200/.test(answer)) fail(`a tunnel opened for ${bytes.toString('latin1')}`);
        // nginx's answers, or (for a mutation that kept the ticket valid) the proxy's own 400/403/502/503.
        const holder = bytes.includes(ctx.basic);
        const allowed = holder ? /^(HTTP\/1\.1 (400|403|404|405|414|501|502|503|505) |<html>)/ : /^(HTTP\/1\.1 (400|404|405|414|501|505) |<html>)/;
        // Plain bytes at the TLS port may get OpenSSL's alert record, as from nginx (e.g. 80 03 00 41 74,
        // an SSLv2-style hello: record_overflow, checked against Debian's nginx).
        const tlsAlert = !insideTls && /^\x15\x03[\x01-\x03]\x00\x02\x02/.test(answer);
        if (answer !== '' && answer !== 'open' && !tlsAlert && !allowed.test(answer)) fail(`not an nginx answer: ${answer.slice(0, 200)}`);
      },
    ),
  async after(ctx) {
    if (ctx.proxy.stats().activeTunnels !== 0) fail('tunnels left open');
    const answer = await exchange(ctx.proxy.address.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), 3000, true);
    if (!answer.startsWith('HTTP/1.1 404')) fail(`no nginx 404 after fuzzing: ${answer}`);
  },
  teardown: (ctx) => ctx.proxy.stop(0),
};

/** Writes `bytes` (inside TLS or plain): what came back before the peer closed, or 'open' after `limitMs`. */
function exchange(port: number, bytes: Buffer, limitMs: number, insideTls: boolean): Promise<string> {
  return new Promise((resolve) => {
    const s = insideTls ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }) : connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve(got.length ? Buffer.concat(got).toString('latin1') : 'open');
    }, limitMs);
    s.on(insideTls ? 'secureConnect' : 'connect', () => s.write(bytes));
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(got).toString('latin1'));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// PeerJS: query strings and frames.

interface PeerjsCtx {
  srv: InProcessServer;
  ws: string;
}

const peerjs: FuzzTarget<PeerjsCtx> = {
  name: 'PeerJS query strings and frames',
  runs: 60,
  async setup() {
    const srv = await startInProcessServer();
    return { srv, ws: srv.url.replace(/^http/, 'ws') };
  },
  property: (ctx) =>
    fc.asyncProperty(
      fc.oneof(
        fc.string({ maxLength: 120 }).map((q) => `/peerjs?${q}`),
        fc.tuple(fc.constantFrom('peerjs', '', 'x'), fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^[a-z0-9]{1,20}$/)), fc.string({ maxLength: 20 })).map(
          ([key, id, token]) => `/peerjs?key=${encodeURIComponent(key)}&id=${encodeURIComponent(id)}&token=${encodeURIComponent(token)}`,
        ),
        fc.string({ maxLength: 60 }).map((p) => `/${p.replace(/[\s#]/g, '')}`),
      ),
      fc.array(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          requestLike.map((v) => JSON.stringify(v) ?? 'x'),
          fc.record({ type: fc.constantFrom('OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE', 'HEARTBEAT', 'EXPIRE', 'OPEN', 'X'), dst: fc.oneof(fc.string({ maxLength: 20 }), fc.constant(null)), payload: edgyValue }).map((f) => JSON.stringify(f)),
          fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
        ),
        { maxLength: 12 },
      ),
      async (path, frames) => {
        let socket: WebSocket;
        try {
          socket = new WebSocket(`${ctx.ws}${path}`);
        } catch {
          return; // the client library refuses the URL itself
        }
        socket.on('error', () => undefined);
        const replies: string[] = [];
        socket.on('message', (d: Buffer) => replies.push(d.toString()));
        await new Promise<void>((resolve) => {
          socket.once('open', () => {
            for (const f of frames) socket.send(f);
            setTimeout(resolve, 30);
          });
          socket.once('close', () => resolve());
          socket.once('unexpected-response', () => resolve());
          setTimeout(resolve, 2000);
        });
        socket.terminate();
        for (const r of replies) {
          let frame: { type?: unknown };
          try {
            frame = JSON.parse(r) as { type?: unknown };
          } catch {
            return fail(`a frame that is not JSON: ${r}`);
          }
          if (typeof frame.type !== 'string') fail(`a frame without a type: ${r}`);
        }
      },
    ),
  async after(ctx) {
    const a = new WebSocket(`${ctx.ws}/peerjs?key=peerjs&id=after-a&token=t`);
    const b = new WebSocket(`${ctx.ws}/peerjs?key=peerjs&id=after-b&token=t`);
    const got = new Promise<string>((resolve, reject) => {
      b.on('message', (d: Buffer) => {
        const f = JSON.parse(d.toString()) as { type: string };
        if (f.type === 'OFFER') resolve(d.toString());
      });
      setTimeout(() => reject(new Error('no relay after fuzzing')), 3000);
    });
    await Promise.all([new Promise((r) => a.once('open', r)), new Promise((r) => b.once('open', r))]);
    await new Promise((r) => setTimeout(r, 50));
    a.send(JSON.stringify({ type: 'OFFER', dst: 'after-b', payload: { sdp: 'x' } }));
    await got;
    a.terminate();
    b.terminate();
  },
  teardown: (ctx) => ctx.srv.stop(),
};

// ---------------------------------------------------------------------------------------------
// DNS packets: through answer() directly, and over UDP and TCP.

const dnsMessages = fc.oneof(
  fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.constantFrom('roundrobin.lantern.test', '_proxy._tcp.roundrobin.lantern.test', 'lantern.test', 'x.peers.lantern.test', 'example.org', '.'), fc.constantFrom('A', 'AAAA', 'SRV', 'SOA', 'ANY', 'TXT', 'MX')).map(([n, t]) => dnsQuery(n, t)),
  fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.constantFrom('roundrobin.lantern.test', 'lantern.test')).map(([at, byte, n]) => {
    const q = dnsQuery(n, 'A');
    q[at % q.length] = byte;
    return q;
  }),
  fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.constantFrom('.lantern.test', '.peers.lantern.test', '')).map(([label, zone]) => {
    // Labels with any bytes, dots and invalid UTF-8 included.
    const q = dnsQuery(`x${zone}`, 'A');
    const raw = Buffer.concat([q.subarray(0, 12), Buffer.from([Math.min(63, label.length)]), Buffer.from(label.subarray(0, 63)), q.subarray(12 + 2)]);
    return raw;
  }),
);

const dns: FuzzTarget<InProcessServer> = {
  name: 'DNS packets over UDP and TCP',
  runs: 300,
  setup: () => startInProcessServer(),
  property: (srv) =>
    fc.asyncProperty(dnsMessages, fc.constantFrom('direct', 'direct', 'direct', 'udp', 'tcp'), async (message, how) => {
      const answer = how === 'direct' ? await srv.dns.answer(message, 'udp') : how === 'udp' ? await udpExchange(srv.dns.address.port, message, 300) : await tcpExchange(srv.dns.address.port, message, 200);
      if (!answer) return;
      let decoded: dnsPacket.DecodedPacket;
      try {
        decoded = dnsPacket.decode(answer);
      } catch (err) {
        return fail(`an answer that does not decode (${String(err)}) to ${message.toString('hex')}`);
      }
      if (decoded.id !== message.readUInt16BE(0)) fail('answer id differs from the query id');
      if (decoded.type !== 'response') fail('an answer that is no response');
      // Questions are echoed byte for byte, however odd their labels.
      const count = answer.readUInt16BE(4);
      if (count > 0) {
        const endQ = rawQuestionsEnd(message, count);
        const endA = rawQuestionsEnd(answer, count);
        if (endQ < 0 || endA < 0 || !answer.subarray(12, endA).equals(message.subarray(12, endQ))) fail(`questions not echoed as sent: ${message.toString('hex')} -> ${answer.toString('hex')}`);
      }
    }),
  async after(srv) {
    if (rcodeOf(await udpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test'))) !== 'NOERROR') fail('DNS no longer answers over UDP');
    if (rcodeOf(await tcpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test'))) !== 'NOERROR') fail('DNS no longer answers over TCP');
  },
  teardown: (srv) => srv.stop(),
};

// ---------------------------------------------------------------------------------------------
// STUN (server --stun-listen).

/** Binding requests with attributes, mutated at random bytes, and random datagrams. */
const stunDatagrams: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 40 })), { maxLength: 4 })).map(([id, attrs]) => {
    const body = Buffer.concat(
      attrs.map(([type, value]) => {
        const head = Buffer.alloc(4);
        head.writeUInt16BE(type, 0);
        head.writeUInt16BE(value.length, 2);
        return Buffer.concat([head, Buffer.from(value), Buffer.alloc((4 - (value.length % 4)) % 4)]);
      }),
    );
    const request = Buffer.concat([bindingRequest(Buffer.from(id)), body]);
    request.writeUInt16BE(body.length, 2);
    return request;
  }),
  fc.tuple(fc.uint8Array({ minLength: 12, maxLength: 12 }), fc.array(fc.tuple(fc.nat(19), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 })).map(([id, flips]) => {
    const request = bindingRequest(Buffer.from(id));
    for (const [at, value] of flips) request.writeUInt8(value, at);
    return request;
  }),
  fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
);

const stun: FuzzTarget<StunServer> = {
  name: 'STUN datagrams',
  runs: 200,
  async setup() {
    const server = new StunServer({ clock: systemClock, logger: silentLogger() }, { host: '127.0.0.1', port: 0, ratePerSecond: 0 });
    await server.start();
    return server;
  },
  property: (server) =>
    fc.asyncProperty(stunDatagrams, async (datagram) => {
      const id = parseBindingRequest(datagram);
      const answer = await udpExchange(server.address.port, datagram, id ? 1000 : 40);
      if (!id) return answer ? fail(`answered what is no Binding request: ${datagram.toString('hex')}`) : undefined;
      if (!answer) return fail(`no answer to a Binding request: ${datagram.toString('hex')}`);
      if (!parseBindingSuccess(answer, id)) fail(`an answer that is no Binding success for the request: ${answer.toString('hex')}`);
    }),
  async after(server) {
    const id = Buffer.alloc(12, 7);
    const answer = await udpExchange(server.address.port, bindingRequest(id), 1000);
    if (!answer || parseBindingSuccess(answer, id)?.address !== '127.0.0.1') fail('STUN no longer answers');
  },
  teardown: (server) => server.stop(),
};

// ---------------------------------------------------------------------------------------------
// Control-socket messages.

const control: FuzzTarget<InProcessServer> = {
  name: 'control-socket messages',
  runs: 200,
  async setup() {
    const srv = await startInProcessServer();
    await srv.server.accounts.add('keeper', 'user', 'keeper password long');
    return srv;
  },
  property: (srv) =>
    fc.asyncProperty(
      fc.oneof(
        requestLike.map((v) => `${JSON.stringify(v)}\n`),
        fc.record({ op: fc.constantFrom('account.add', 'account.revoke', 'status', 'x'), name: edgyValue, role: fc.constantFrom('user', 'verifier', 'root', 1), password: edgyValue, deviceId: edgyValue }).map((v) => `${JSON.stringify(v)}\n`),
        fc.string({ unit: 'binary', maxLength: 200 }).map((s) => `${s}\n`),
        fc.constant('x'.repeat(20_000)),
      ),
      async (line) => {
        const answer = await new Promise<string>((resolve, reject) => {
          const s = createConnection(srv.controlPath);
          let got = '';
          s.setEncoding('utf8');
          s.on('connect', () => s.write(line));
          s.on('data', (d: string) => (got += d));
          s.on('end', () => resolve(got));
          s.on('error', reject);
          setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
        });
        const parsed = ControlAnswer.safeParse(JSON.parse(answer));
        if (!parsed.success) fail(`unclear answer ${answer}`);
        if (parsed.data && 'error' in parsed.data && !isErrorCode(parsed.data.error.code)) fail(`unknown code ${answer}`);
        if (parsed.data && 'error' in parsed.data && parsed.data.error.code === 'LA_ERR_INTERNAL') fail(`internal error for ${line.slice(0, 200)}`);
      },
    ),
  async after(srv) {
    if (!(await srv.store.getAccount('keeper'))) fail('an account made before fuzzing is gone');
    const health = await fetch(`${srv.url}/v1/health`, { headers: { [VERSION_HEADER]: String(PROTOCOL_VERSION) } });
    if (health.status !== 200) fail('the server no longer answers');
  },
  teardown: (srv) => srv.stop(),
};

export const fuzzTargets: Array<FuzzTarget<never>> = [apiBodies, authorizationHeader, tickets, handshakeSplits, giveWire, peerjs, dns, stun, control] as Array<FuzzTarget<never>>;
