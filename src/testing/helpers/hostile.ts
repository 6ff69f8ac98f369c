import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

/** Resident set size of a process, in bytes (from /proc). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** CPU time (user + system) a process has used, in seconds (from /proc). */
export async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Samples the RSS of `pid` every 100 ms while `during` runs; the highest value seen. */
export async function peakRss(pid: number, during: () => Promise<unknown>): Promise<{ peak: number; result: unknown }> {
  let peak = await rssOf(pid);
  let done = false;
  const sampler = (async () => {
    while (!done) {
      peak = Math.max(peak, await rssOf(pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  try {
    const result = await during();
    return { peak: Math.max(peak, await rssOf(pid)), result };
  } finally {
    done = true;
    await sampler;
  }
}

/** A TCP connection from `localAddress` (any 127.x.y.z is this machine), resolved once connected. */
export function tcp(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    s.on('error', () => undefined);
  });
}

/**
 * Resolves when the socket is closed by the other side (or after `limitMs` with false). The socket
 * is read (and what arrives dropped), since a socket that reads nothing never sees the close.
 */
export function closedWithin(socket: Socket, limitMs: number): Promise<boolean> {
  if (socket.destroyed || socket.readableEnded) return Promise.resolve(true);
  socket.resume();
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), limitMs);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    socket.once('close', done);
    socket.once('end', done);
  });
}

/** GET `url` from `localAddress`, within `limitMs`: status and body, or an Error. */
export function getWithin(url: string, limitMs: number, localAddress = '127.0.0.1', headers: Record<string, string> = {}): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { localAddress, headers, agent: false, signal: AbortSignal.timeout(limitMs) }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', (err) => resolve(err));
    });
    req.on('error', (err) => resolve(err));
    req.end();
  });
}

/** A masked client WebSocket frame (RFC 6455) carrying `payload` with `opcode` (1: text). */
export function wsFrame(payload: Buffer | string, opcode = 1): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const mask = randomBytes(4);
  const len = data.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]) : undefined;
  if (!head) throw new Error('frame too large for this helper');
  const masked = Buffer.alloc(len);
  for (let i = 0; i < len; i++) masked[i] = data[i]! ^ mask[i % 4]!;
  return Buffer.concat([head, mask, masked]);
}

/**
 * Opens a raw WebSocket (the upgrade written by hand) and returns the socket once the 101 is in,
 * with anything after the 101 left unread: a client that may then never read.
 */
export async function rawWebSocket(port: number, path: string, localAddress = '127.0.0.1'): Promise<Socket> {
  const s = await tcp(port, localAddress);
  s.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise<void>((resolve, reject) => {
    let got = '';
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        s.off('data', onData);
        s.pause();
        if (/^HTTP\/1\.1 101/.test(got)) resolve();
        else reject(new Error(`no upgrade: ${got.slice(0, 200)}`));
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before the upgrade')));
  });
  return s;
}

/**
 * Writes `chunk` again and again for up to `limitMs` or `maxBytes`, honouring the socket's own
 * backpressure (so what is measured is the peer's memory, not ours); the bytes the kernel took.
 */
export async function flood(socket: Socket, chunk: Buffer, maxBytes: number, limitMs: number): Promise<number> {
  const deadline = Date.now() + limitMs;
  let sent = 0;
  while (sent < maxBytes && Date.now() < deadline && !socket.destroyed) {
    const ok = socket.write(chunk);
    sent += chunk.length;
    if (!ok) {
      const drained = await Promise.race([
        new Promise<boolean>((r) => socket.once('drain', () => r(true))),
        new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(0, deadline - Date.now()))),
        new Promise<boolean>((r) => socket.once('close', () => r(false))),
      ]);
      if (!drained) break;
    }
  }
  return sent;
}

/** A TLS connection (self-signed peers: no certificate check here) from `localAddress`, ALPN http/1.1. */
export async function tlsTo(port: number, localAddress = '127.0.0.1'): Promise<TLSSocket> {
  const raw = await tcp(port, localAddress);
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket: raw, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
    s.on('error', () => undefined);
  });
}
