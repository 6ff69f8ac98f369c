// Proxy benchmark: through our give proxy and directly, in the same run, on loopback: bulk MiB/s
// through CONNECT, added round-trip time on an established tunnel, new tunnels per second at 50
// concurrent, memory per idle tunnel with 1,000 open, plain HTTP forward small GETs per second.
// The proxy runs in its own process (scripts/bench/give-child.ts).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent, ProxyAgent, request } from 'undici';
import { generateTicketKey, TicketIssuer } from '../../src/crypto/tickets.js';
import { listen } from '../../src/net/listen.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const BULK_BYTES = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(256 * 1024, 7);

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function connectVia(proxyPort: number | undefined, port: number, auth: string): Promise<Socket> {
  if (proxyPort === undefined) {
    const s = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    await once(s, 'connect');
    return s;
  }
  const s = connect(proxyPort, '127.0.0.1');
  s.setNoDelay(true);
  await once(s, 'connect');
  s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nProxy-Authorization: ${auth}\r\n\r\n`);
  let head = '';
  while (!head.includes('\r\n\r\n')) head += ((await once(s, 'data')) as [Buffer])[0].toString('latin1');
  if (!head.startsWith('HTTP/1.1 200')) throw new Error(`CONNECT failed: ${head}`);
  return s;
}

async function bulk(proxyPort: number | undefined, httpPort: number, auth: string): Promise<number> {
  const s = await connectVia(proxyPort, httpPort, auth);
  const start = performance.now();
  s.write('GET /bulk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  let n = 0;
  for await (const chunk of s) n += (chunk as Buffer).length;
  return n / 2 ** 20 / ((performance.now() - start) / 1000);
}

async function rtts(proxyPort: number | undefined, echoPort: number, auth: string, count: number): Promise<number[]> {
  const s = await connectVia(proxyPort, echoPort, auth);
  const out: number[] = [];
  const one = Buffer.from([1]);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    s.write(one);
    await once(s, 'data');
    out.push((performance.now() - t0) * 1000);
  }
  s.destroy();
  return out.sort((a, b) => a - b);
}

async function tunnelsPerSecond(proxyPort: number | undefined, echoPort: number, auth: string): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (performance.now() < until) {
        const s = await connectVia(proxyPort, echoPort, auth);
        s.write('x');
        await once(s, 'data');
        s.destroy();
        n++;
      }
    }),
  );
  return n / SECONDS;
}

async function smallGets(dispatcher: Agent | ProxyAgent, url: string): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      while (performance.now() < until) {
        const r = await request(url, { dispatcher });
        await r.body.dump();
        n++;
      }
    }),
  );
  return n / SECONDS;
}

export async function run(): Promise<void> {
  const http = createHttpServer((req, res) => {
    if (req.url === '/bulk') {
      res.writeHead(200, { 'content-length': BULK_BYTES });
      let sent = 0;
      const pump = () => {
        while (sent < BULK_BYTES) {
          sent += CHUNK.length;
          if (!res.write(CHUNK)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
      res.end('ok');
    }
  });
  const httpPort = (await listen(http, '127.0.0.1', 0)).port;
  // The echo server runs in its own process too, so the direct round trip also crosses processes
  // and the difference is what the proxy adds.
  const echoChild = spawn(
    process.execPath,
    ['-e', "const s=require('net').createServer(c=>{c.setNoDelay(true);c.pipe(c)});s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const echoPort = Number(((await once(createInterface({ input: echoChild.stdout! }), 'line')) as [string])[0]);

  const key = generateTicketKey();
  const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 3600_000 });
  const auth = `Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}`;
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(new URL('./give-child.ts', import.meta.url))], {
    env: { ...process.env, TICKET_PUBLIC_KEY: key.publicKeyPem },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const next = () => new Promise<Record<string, unknown>>((resolve) => lines.once('line', (l) => resolve(JSON.parse(l) as Record<string, unknown>)));
  const proxyUrl = String((await next())['url']);
  const proxyPort = Number(new URL(proxyUrl).port);
  console.log(`proxy benchmark: give proxy pid ${child.pid} at ${proxyUrl}; ${SECONDS} s per timed case`);

  const bd = await bulk(undefined, httpPort, auth);
  const bp = await bulk(proxyPort, httpPort, auth);
  console.log(`bulk through CONNECT: ${bp.toFixed(0)} MiB/s vs ${bd.toFixed(0)} MiB/s direct = ${(bp / bd).toFixed(2)}x (target >= 0.36x)`);

  const rd = await rtts(undefined, echoPort, auth, 5000);
  const rp = await rtts(proxyPort, echoPort, auth, 5000);
  console.log(
    `round trip on an established tunnel: p50 ${pct(rp, 50).toFixed(0)} us vs ${pct(rd, 50).toFixed(0)} us direct (added ${(pct(rp, 50) - pct(rd, 50)).toFixed(0)} us, target <= 50), p99 ${pct(rp, 99).toFixed(0)} vs ${pct(rd, 99).toFixed(0)} us (added ${(pct(rp, 99) - pct(rd, 99)).toFixed(0)} us, target <= 330)`,
  );

  const td = await tunnelsPerSecond(undefined, echoPort, auth);
  const tp = await tunnelsPerSecond(proxyPort, echoPort, auth);
  console.log(`new tunnels/s at 50 concurrent: ${tp.toFixed(0)} vs ${td.toFixed(0)} direct connections/s = ${(tp / td).toFixed(2)}x (target >= 0.48x)`);

  child.kill('SIGUSR2');
  const before = (await next())['memory'] as NodeJS.MemoryUsage;
  const idle = await Promise.all(Array.from({ length: 1000 }, () => connectVia(proxyPort, echoPort, auth)));
  await new Promise((r) => setTimeout(r, 500));
  child.kill('SIGUSR2');
  const after = (await next())['memory'] as NodeJS.MemoryUsage;
  const per = (k: 'rss' | 'heapUsed') => ((after[k] - before[k]) / 1000 / 1024).toFixed(1);
  console.log(`1,000 idle tunnels: ${per('heapUsed')} KiB of JS heap and ${per('rss')} KiB RSS per tunnel (after GC; RSS moves with what earlier phases freed; target <= 20 KiB)`);
  for (const s of idle) s.destroy();

  const direct = new Agent({ connections: 50 });
  const viaProxy = new ProxyAgent({ uri: proxyUrl, token: auth, proxyTunnel: false, connections: 50 });
  const gd = await smallGets(direct, `http://127.0.0.1:${httpPort}/small`);
  const gp = await smallGets(viaProxy, `http://127.0.0.1:${httpPort}/small`);
  console.log(`plain HTTP forward small GETs/s at 50 concurrent: ${gp.toFixed(0)} vs ${gd.toFixed(0)} direct = ${(gp / gd).toFixed(2)}x (target >= 0.5x)`);

  await direct.close();
  await viaProxy.close();
  child.kill('SIGTERM');
  await once(child, 'exit');
  http.close();
  echoChild.kill();
}
