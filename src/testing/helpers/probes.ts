import { randomBytes } from 'node:crypto';
import { connect as h2connect, constants as h2c } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

/**
 * What active-probing censors send to a suspected proxy (Ensafi et al., IMC 2015; Alice et al., IMC
 * 2020; Frolov et al., NDSS 2020): random bytes of many lengths, replays of a real session's first
 * packet, TLS hellos with odd SNI or ALPN, HTTP/0.9 to 2.0 and broken variants of it, proxy
 * handshakes. Each probe is sent on a fresh connection to a server, and what comes back (bytes, and
 * how the connection ends) is recorded, with `Date` values masked, so that two servers can be
 * compared answer for answer.
 */
export interface Probe {
  name: string;
  /** `tls`: inside TLS (ALPN as given); `plain`: raw bytes on the TLS port; `h2`: HTTP/2 over TLS. */
  over: 'tls' | 'plain' | 'h2';
  alpn?: string[];
  servername?: string;
  /** TLS: the ClientHello's suites in preference order (OpenSSL names), and the versions offered. */
  ciphers?: string;
  versions?: { min: 'TLSv1.2' | 'TLSv1.3'; max: 'TLSv1.2' | 'TLSv1.3' };
  /** Bytes to send (tls/plain), one write each. */
  send?: Array<string | Buffer>;
  /** HTTP/2: the request headers (and body). */
  h2?: { headers: Record<string, string>; body?: string };
}

const CRLF = '\r\n';
const req = (line: string, ...headers: string[]) => `${line}${CRLF}${headers.map((h) => `${h}${CRLF}`).join('')}${CRLF}`;

/** `replayed` is the first packet of a real session with a ticket the server will refuse. */
export function probeCorpus(replayed: string): Probe[] {
  const rnd = (n: number, seed: number) => {
    const b = randomBytes(n);
    b[0] = seed; // a first byte that is neither TLS nor an HTTP method letter, chosen per probe
    return b;
  };
  const tls = (name: string, ...send: Array<string | Buffer>): Probe => ({ name, over: 'tls', alpn: ['http/1.1'], send });
  return [
    tls('GET /', req('GET / HTTP/1.1', 'Host: example.org')),
    tls('GET a file', req('GET /index.html HTTP/1.1', 'Host: example.org', 'User-Agent: Mozilla/5.0')),
    tls('GET gzip', req('GET / HTTP/1.1', 'Host: example.org', 'Accept-Encoding: gzip, deflate, br')),
    tls('GET HTTP/1.0', req('GET / HTTP/1.0')),
    tls('GET HTTP/1.0 keep-alive', req('GET / HTTP/1.0', 'Connection: keep-alive')),
    tls('GET without Host', req('GET / HTTP/1.1')),
    tls('GET Connection: close', req('GET /a HTTP/1.1', 'Host: x', 'Connection: close')),
    tls('HEAD', req('HEAD / HTTP/1.1', 'Host: x')),
    tls('POST with body', `${req('POST /login HTTP/1.1', 'Host: x', 'Content-Type: application/json', 'Content-Length: 13')}{"user":"me"}`),
    tls('PUT', `${req('PUT /x HTTP/1.1', 'Host: x', 'Content-Length: 2')}hi`),
    tls('DELETE', req('DELETE /x HTTP/1.1', 'Host: x')),
    tls('OPTIONS *', req('OPTIONS * HTTP/1.1', 'Host: x')),
    tls('TRACE', req('TRACE / HTTP/1.1', 'Host: x')),
    tls('unknown method', req('BREW /pot HTTP/1.1', 'Host: x')),
    tls('lower-case method', req('get / HTTP/1.1', 'Host: x')),
    tls('CONNECT no ticket', req('CONNECT example.org:443 HTTP/1.1', 'Host: example.org:443')),
    tls('CONNECT bad ticket', req('CONNECT example.org:443 HTTP/1.1', 'Host: example.org:443', `Proxy-Authorization: Basic ${Buffer.from('ticket:eyJ2IjoxfQ.AAAA').toString('base64')}`)),
    tls('CONNECT replayed', replayed),
    tls('absolute URI', req('GET http://example.org/ HTTP/1.1', 'Host: example.org', 'Proxy-Authorization: Basic dGlja2V0Onh4eA==')),
    tls('absolute https URI', req('GET https://example.org/x HTTP/1.1', 'Host: example.org')),
    tls('HTTP/2.0 in a request line', req('GET / HTTP/2.0', 'Host: x')),
    tls('HTTP/1.2', req('GET / HTTP/1.2', 'Host: x')),
    tls('HTTP/3.0', req('GET / HTTP/3.0', 'Host: x')),
    tls('HTTP/0.9', `GET /${CRLF}`),
    tls('Expect: 100-continue', req('POST /upload HTTP/1.1', 'Host: x', 'Content-Length: 10', 'Expect: 100-continue')),
    tls('long URI', req(`GET /${'a'.repeat(9000)} HTTP/1.1`, 'Host: x')),
    tls('long header', req('GET / HTTP/1.1', 'Host: x', `X-Long: ${'b'.repeat(9000)}`)),
    tls('many headers', req('GET / HTTP/1.1', 'Host: x', ...Array.from({ length: 100 }, (_, i) => `X-H${i}: ${i}`))),
    tls('pipelined', `${req('GET /one HTTP/1.1', 'Host: x')}${req('GET /two HTTP/1.1', 'Host: x')}`),
    tls('header without colon', req('GET / HTTP/1.1', 'Host: x', 'Broken header')),
    tls('space before colon', req('GET / HTTP/1.1', 'Host : x')),
    tls('chunked body', `${req('POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked')}5${CRLF}hello${CRLF}0${CRLF}${CRLF}`),
    tls('unknown transfer-encoding', req('POST / HTTP/1.1', 'Host: x', 'Transfer-Encoding: gzip')),
    tls('content-length and chunked', `${req('POST / HTTP/1.1', 'Host: x', 'Content-Length: 3', 'Transfer-Encoding: chunked')}0${CRLF}${CRLF}`),
    tls('negative content-length', req('POST / HTTP/1.1', 'Host: x', 'Content-Length: -1')),
    tls('dot-dot path', req('GET /../../etc/passwd HTTP/1.1', 'Host: x')),
    tls('encoded path', req('GET /%2e%2e/%00 HTTP/1.1', 'Host: x')),
    tls('bad Host', req('GET / HTTP/1.1', 'Host: exa mple/..')),
    tls('two requests, second later', req('GET /first HTTP/1.1', 'Host: x'), req('GET /second HTTP/1.1', 'Host: x', 'Connection: close')),
    tls('empty lines only', `${CRLF}${CRLF}${CRLF}`),
    tls('SOCKS5 greeting', Buffer.from([5, 1, 0])),
    tls('SOCKS5 user/pass', Buffer.from([5, 2, 0, 2])),
    tls('SOCKS4', Buffer.from([4, 1, 0, 80, 93, 184, 216, 34, 0])),
    tls('HTTP/2 preface over http/1.1', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
    tls('request line in two parts', 'GET / HT', 'TP/1.1\r\nHost: x\r\n\r\n'),
    tls('fails mid-line', 'GET / HTTX'),
    tls('unfinished request line', 'GET / HTTP/1.1'),
    tls('CONNECT line alone', 'CONNECT example.org:443 HTTP/1.1\r\n'),
    tls('SOCKS5 pipelined, bad ticket', Buffer.concat([Buffer.from([5, 1, 2, 1, 6]), Buffer.from('ticket'), Buffer.from([7]), Buffer.from('garbage')])),
    tls('HEAD gzip', req('HEAD / HTTP/1.1', 'Host: x', 'Accept-Encoding: gzip')),
    tls('gzip q=0', req('GET / HTTP/1.1', 'Host: x', 'Accept-Encoding: gzip;q=0')),
    tls('HTTP/1.0 gzip', req('GET / HTTP/1.0', 'Accept-Encoding: gzip')),
    tls('duplicate Host', req('GET / HTTP/1.1', 'Host: a', 'Host: b')),
    tls('duplicate Content-Length', `${req('POST / HTTP/1.1', 'Host: x', 'Content-Length: 1', 'Content-Length: 1')}x`),
    tls('HTTP/1.0 chunked', req('POST / HTTP/1.0', 'Transfer-Encoding: chunked')),
    tls('underscore header', req('GET / HTTP/1.1', 'Host: x', 'X_Under: 1')),
    tls('folded header', req('GET / HTTP/1.1', 'Host: x', ' folded')),
    tls('control character in the path', req('GET /a\x01b HTTP/1.1', 'Host: x')),
    tls('space in an absolute URI', req('GET http://ex ample/ HTTP/1.1', 'Host: x')),
    tls('keep-alive, then a bad second request', req('GET /a HTTP/1.1', 'Host: x'), 'get /b HTTP/1.1\r\n\r\n'),
    tls('body then the next request', `${req('POST /a HTTP/1.1', 'Host: x', 'Content-Length: 4')}abcd${req('GET /b HTTP/1.1', 'Host: x', 'Connection: close')}`),
    tls('random 1 byte', rnd(1, 0x03)),
    tls('random 16 bytes', rnd(16, 0x9c)),
    tls('random 200 bytes', rnd(200, 0x2a)),
    tls('random 2000 bytes', rnd(2000, 0xe7)),
    tls('NUL bytes', Buffer.alloc(64)),
    { name: 'no ALPN', over: 'tls', send: [req('GET / HTTP/1.1', 'Host: x')] },
    // Which suite the server picks from a client's preferences tells servers apart.
    { name: 'TLS 1.3, AES-128-GCM preferred (a browser)', over: 'tls', alpn: ['http/1.1'], ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256', send: [req('GET / HTTP/1.1', 'Host: x')] },
    { name: 'TLS 1.3, ChaCha20 preferred', over: 'tls', alpn: ['http/1.1'], ciphers: 'TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384', send: [req('GET / HTTP/1.1', 'Host: x')] },
    { name: 'TLS 1.2 only, a browser\'s suites', over: 'tls', alpn: ['http/1.1'], versions: { min: 'TLSv1.2', max: 'TLSv1.2' }, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA', send: [req('GET / HTTP/1.1', 'Host: x')] },
    { name: 'TLS 1.2 only, CBC suites only', over: 'tls', alpn: ['http/1.1'], versions: { min: 'TLSv1.2', max: 'TLSv1.2' }, ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256', send: [req('GET / HTTP/1.1', 'Host: x')] },
    { name: 'odd SNI', over: 'tls', alpn: ['http/1.1'], servername: 'www.google.com', send: [req('GET / HTTP/1.1', 'Host: www.google.com')] },
    { name: 'plain GET on the TLS port', over: 'plain', send: [req('GET / HTTP/1.1', 'Host: x')] },
    { name: 'plain CONNECT on the TLS port', over: 'plain', send: [req('CONNECT example.org:443 HTTP/1.1', 'Host: example.org:443')] },
    { name: 'plain HTTP/0.9 on the TLS port', over: 'plain', send: [`GET /${CRLF}`] },
    { name: 'plain SOCKS5 on the TLS port', over: 'plain', send: [Buffer.from([5, 1, 0])] },
    { name: 'plain random bytes on the TLS port', over: 'plain', send: [rnd(100, 0x41)] },
    { name: 'plain h2 preface on the TLS port', over: 'plain', send: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'] },
    // The server's first frames, raw: its SETTINGS and the connection's WINDOW_UPDATE.
    { name: 'h2 preface alone, raw frames', over: 'tls', alpn: ['h2'], send: ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'] },
    { name: 'h2 GET /', over: 'h2', h2: { headers: { ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': 'example.org' } } },
    { name: 'h2 GET gzip', over: 'h2', h2: { headers: { ':method': 'GET', ':path': '/x', ':scheme': 'https', ':authority': 'example.org', 'accept-encoding': 'gzip' } } },
    { name: 'h2 POST', over: 'h2', h2: { headers: { ':method': 'POST', ':path': '/api', ':scheme': 'https', ':authority': 'x', 'content-type': 'text/plain' }, body: 'hello' } },
    { name: 'h2 CONNECT no ticket', over: 'h2', h2: { headers: { ':method': 'CONNECT', ':authority': 'example.org:443' } } },
    { name: 'h2 CONNECT bad ticket', over: 'h2', h2: { headers: { ':method': 'CONNECT', ':authority': 'example.org:443', 'proxy-authorization': 'Basic dGlja2V0Onh4eA==' } } },
  ];
}

export interface Transcript {
  /** What came back, `Date:` values masked. For h2: status, headers in order, body. */
  answer: string;
  /** How it ended: closed by the server, or still open when the probe gave up. */
  ended: 'closed' | 'open';
  /** For TLS probes: the protocol and ALPN agreed, or the handshake error. */
  tls?: string;
}

const maskDate = (s: string) => s.replace(/^(date: ?).*$/gim, '$1<date>');

/** Runs one probe against 127.0.0.1:port; waits `quietMs` of silence (or the close) before concluding. */
export async function runProbe(port: number, probe: Probe, quietMs = 400): Promise<Transcript> {
  if (probe.over === 'h2') return runH2(port, probe);
  let socket: Socket | TLSSocket;
  let tlsInfo: string | undefined;
  if (probe.over === 'plain') {
    socket = netConnect(port, '127.0.0.1');
    await new Promise((r, j) => socket.once('connect', r).once('error', j));
  } else {
    socket = tlsConnect({
      host: '127.0.0.1',
      port,
      rejectUnauthorized: false,
      ...(probe.alpn ? { ALPNProtocols: probe.alpn } : {}),
      ...(probe.servername ? { servername: probe.servername } : {}),
      ...(probe.ciphers ? { ciphers: probe.ciphers } : {}),
      ...(probe.versions ? { minVersion: probe.versions.min, maxVersion: probe.versions.max } : {}),
    });
    tlsInfo = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () => resolve(`${(socket as TLSSocket).getProtocol()} ${(socket as TLSSocket).alpnProtocol || 'no-alpn'} ${(socket as TLSSocket).getCipher().standardName}`));
      socket.once('error', (err) => resolve(`error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    if (tlsInfo.startsWith('error')) return { answer: '', ended: 'closed', tls: tlsInfo };
  }
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  const state: { ended: Transcript['ended'] } = { ended: 'open' };
  const closed = new Promise<void>((r) => socket.once('close', () => ((state.ended = 'closed'), r())));
  let last = Date.now();
  socket.on('data', (d: Buffer) => {
    chunks.push(d);
    last = Date.now();
  });
  for (const part of probe.send ?? []) {
    socket.write(part);
    await new Promise((r) => setTimeout(r, 50));
  }
  for (;;) {
    const idle = Date.now() - last;
    if (state.ended === 'closed' || idle >= quietMs) break;
    await Promise.race([closed, new Promise((r) => setTimeout(r, quietMs - idle))]);
  }
  socket.destroy();
  return { answer: maskDate(Buffer.concat(chunks).toString('latin1')), ended: state.ended, ...(tlsInfo ? { tls: tlsInfo } : {}) };
}

async function runH2(port: number, probe: Probe): Promise<Transcript> {
  const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false } as never);
  session.on('error', () => undefined);
  try {
    const answer = await new Promise<string>((resolve) => {
      const stream = session.request(probe.h2!.headers, { endStream: probe.h2!.body === undefined && probe.h2!.headers[':method'] !== 'CONNECT' });
      let head = '';
      const chunks: Buffer[] = [];
      stream.on('response', (headers, flags) => {
        void flags;
        const list = Object.entries(headers).filter(([k]) => k !== h2c.HTTP2_HEADER_STATUS);
        head = `:status ${headers[h2c.HTTP2_HEADER_STATUS]}\n${list.map(([k, v]) => `${k}: ${String(v)}`).join('\n')}\n`;
      });
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => resolve(maskDate(`${head}\n${Buffer.concat(chunks).toString('latin1')}`)));
      stream.on('error', (err) => resolve(`stream error ${(err as NodeJS.ErrnoException).code ?? err.message}`));
      stream.on('close', () => resolve(maskDate(`${head}\n${Buffer.concat(chunks).toString('latin1')}${stream.rstCode ? `\nrst ${stream.rstCode}` : ''}`)));
      if (probe.h2!.body !== undefined) stream.end(probe.h2!.body);
      setTimeout(() => resolve(`timeout ${head}`), 2000);
    });
    return { answer, ended: 'closed', tls: 'h2' };
  } finally {
    session.destroy();
  }
}

/** Sends a probe and measures how long the server keeps the connection (ms), up to `limitMs`. */
export async function timeToClose(port: number, probe: Probe, limitMs: number): Promise<number | undefined> {
  const started = Date.now();
  let socket: Socket | TLSSocket;
  if (probe.over === 'plain') {
    socket = netConnect(port, '127.0.0.1');
    await new Promise((r, j) => socket.once('connect', r).once('error', j));
  } else {
    socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: probe.alpn ?? ['http/1.1'] });
    await new Promise((r, j) => socket.once('secureConnect', r).once('error', j));
  }
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  for (const part of probe.send ?? []) socket.write(part);
  const closedAt = await Promise.race([
    new Promise<number>((r) => socket.once('close', () => r(Date.now()))),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), limitMs)),
  ]);
  socket.destroy();
  return closedAt === undefined ? undefined : closedAt - started;
}
