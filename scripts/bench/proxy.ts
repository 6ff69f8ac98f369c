// Proxy benchmark, in one run on loopback: directly, through a plaintext give peer, and through a
// TLS give peer over HTTP/1.1 CONNECT and over HTTP/2 CONNECT (one warm connection): bulk MiB/s,
// echo round trip on an established tunnel, new tunnels per second at 50 concurrent (opened and
// used on loopback, where a TCP handshake costs no time; opened over an emulated 20 ms link, where
// it costs a round trip as on a real network, at 50 and at 10 concurrent, about what a browser
// opens for a page), the give process's CPU per new tunnel, memory per idle tunnel with
// 1,000 open, and the ratios the transport targets are stated in. The give peers run in their own
// processes (scripts/bench/give-child.ts).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent, ProxyAgent, request } from 'undici';
import type { Duplex } from 'node:stream';
import { generateTicketKey, TicketIssuer } from '../../src/crypto/tickets.js';
import { connectHttp1, connectPinned, PeerTunnels } from '../../src/net/tunnel.js';
import nodeDataChannel from 'node-datachannel';
import { silentLogger } from '../../src/core/logger.js';
import { IceTunnels } from '../../src/net/ice/ice-tunnels.js';
import type { IceSignal } from '../../src/protocol/messages.js';
import { listen } from '../../src/net/listen.js';
import { delayLink } from './delay-link.js';
import { TS_CHILD } from './child-output.js';

const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
/** The emulated link's one-way delay (a 20 ms round trip). */
const LINK_ONE_WAY_MS = 10;

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

interface Measured {
  bulk: number;
  p50: number;
  p99: number;
  tunnels: number;
  /** Give process CPU (user + system) per new tunnel, µs. */
  giveCpu: number;
  /** New tunnels/s over the emulated link, 50 and 10 concurrent (not measured for direct). */
  linkTunnels?: number;
  linkTunnels10?: number;
}

/** How one kind of client opens a tunnel to 127.0.0.1:port. */
type Opener = (port: number) => Promise<Duplex>;

async function bulk(open: Opener, httpPort: number): Promise<number> {
  const s = await open(httpPort);
  const start = performance.now();
  s.write('GET /bulk HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  // Read as get's relay reads a tunnel ('data' events; an async iterator costs more per chunk,
  // which would charge HTTP/2's smaller chunks for the benchmark's own reading).
  let n = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (chunk: Buffer) => (n += chunk.length));
    s.once('end', resolve);
    s.once('error', reject);
  });
  return n / 2 ** 20 / ((performance.now() - start) / 1000);
}

async function rtts(open: Opener, echoPort: number, count: number): Promise<number[]> {
  const s = await open(echoPort);
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

/**
 * New tunnels per second at `concurrent` (50 unless said): each opened (the peer has connected to the destination
 * and answered 200), then, with `echo`, used for one round trip, then closed as a browser closes
 * a connection.
 */
async function tunnelsPerSecond(open: Opener, echoPort: number, echo = true, concurrent = 50): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: concurrent }, async () => {
      while (performance.now() < until) {
        const s = await open(echoPort);
        if (echo) {
          s.write('x');
          await once(s, 'data');
        }
        s.on('error', () => undefined);
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

/**
 * A give peer in its own process (plaintext or TLS), and how to read its memory. With `ice` it also
 * takes WebRTC offers, the signals passed over its stdin and stdout (standing for the messages).
 */
async function startGive(ticketKey: string, tls: boolean, ice?: { onSignal(signal: IceSignal): void }) {
  const child = spawn(process.execPath, ['--expose-gc', ...TS_CHILD, fileURLToPath(new URL('./give-child.ts', import.meta.url))], {
    env: { ...process.env, TICKET_PUBLIC_KEY: ticketKey, GIVE_TLS: tls ? '1' : '0', GIVE_ICE: ice ? '1' : '0' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: Record<string, unknown>) => void> = [];
  lines.on('line', (l) => {
    const line = JSON.parse(l) as Record<string, unknown>;
    if (line['signal']) ice?.onSignal(line['signal'] as IceSignal);
    else waiting.shift()?.(line);
  });
  const next = () => new Promise<Record<string, unknown>>((resolve) => waiting.push(resolve));
  const signal = (s: IceSignal) => child.stdin!.write(`${JSON.stringify({ signal: s })}\n`);
  const first = await next();
  const url = new URL(String(first['url']));
  const sample = async () => {
    child.kill('SIGUSR2');
    const line = await next();
    return { memory: line['memory'] as NodeJS.MemoryUsage, cpu: line['cpu'] as NodeJS.CpuUsage, served: (line['stats'] as { tunnelsServed: number }).tunnelsServed };
  };
  const stop = async () => {
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
  return { child, url: url.toString(), port: Number(url.port), identityKey: String(first['identityKey']), sample, stop, signal };
}
type Give = Awaited<ReturnType<typeof startGive>>;

/** New tunnels per second, and the give process's CPU per tunnel over the same run. */
async function tunnelCost(give: Give | undefined, open: Opener, echoPort: number): Promise<{ tunnels: number; giveCpu: number }> {
  const before = await give?.sample();
  const tunnels = await tunnelsPerSecond(open, echoPort);
  const after = await give?.sample();
  if (!before || !after) return { tunnels, giveCpu: 0 };
  const cpu = after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system;
  return { tunnels, giveCpu: cpu / Math.max(1, after.served - before.served) };
}

/**
 * Heap and RSS per idle tunnel, with 1,000 open (after a GC), in a give process of its own that has
 * first opened and closed 1,000 tunnels the same way, so that code and pools are warm in the baseline.
 */
async function idleCost(give: Give, open: Opener, echoPort: number): Promise<{ heap: number; rss: number }> {
  const openMany = async () => {
    const idle: Duplex[] = [];
    for (let i = 0; i < 1000; i += 50) idle.push(...(await Promise.all(Array.from({ length: 50 }, () => open(echoPort)))));
    for (const s of idle) s.on('error', () => undefined);
    return idle;
  };
  for (const s of await openMany()) s.destroy();
  await new Promise((r) => setTimeout(r, 500));
  const before = (await give.sample()).memory;
  const idle = await openMany();
  await new Promise((r) => setTimeout(r, 500));
  const after = (await give.sample()).memory;
  for (const s of idle) s.destroy();
  return { heap: (after.heapUsed - before.heapUsed) / 1000 / 1024, rss: (after.rss - before.rss) / 1000 / 1024 };
}

/** The ways to open a tunnel through a plaintext and a TLS give peer at these ports. */
function openers(plainPort: number, tlsPeer: { port: number; identityKey: string }, ticket: string, h2: PeerTunnels): Record<'plain' | 'tlsH1' | 'tlsH2', Opener> {
  const auth = `Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}`;
  const peer = { host: '127.0.0.1', ...tlsPeer };
  return {
    plain: (port) => connectVia(plainPort, port, auth),
    tlsH1: async (port) => connectHttp1(await connectPinned(peer, 5000, ['http/1.1']), ticket, { host: '127.0.0.1', port }, 5000),
    tlsH2: (port) => h2.open(peer, ticket, { host: '127.0.0.1', port }),
  };
}

export async function run(): Promise<void> {
  // The destinations run in a process of their own, so the direct path also crosses processes and
  // the difference is what the proxy adds.
  const origin = spawn(process.execPath, [...TS_CHILD, fileURLToPath(new URL('./origin-child.ts', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
  const { httpPort, echoPort } = JSON.parse(((await once(createInterface({ input: origin.stdout! }), 'line')) as [string])[0]) as { httpPort: number; echoPort: number };

  const key = generateTicketKey();
  const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 3600_000 });
  const auth = `Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}`;
  console.log(`proxy benchmark: each give peer in a fresh process; ${SECONDS} s per timed case`);
  const transports: Array<[string, 'plain' | 'tlsH1' | 'tlsH2' | 'ice' | undefined]> = [
    ['direct', undefined],
    ['plaintext give (HTTP/1.1 CONNECT)', 'plain'],
    ['TLS give, HTTP/1.1 CONNECT', 'tlsH1'],
    ['TLS give, HTTP/2 CONNECT (one warm connection)', 'tlsH2'],
    ['give over WebRTC (a data channel per tunnel on one connection, host candidates)', 'ice'],
  ];
  const results = new Map<string, Measured>();
  for (const [name, kind] of transports) {
    // Over WebRTC the signals go through the child's stdin and stdout instead of the server's messages.
    let iceTunnels: IceTunnels | undefined;
    const giveDevice = { userId: '0c2b6f1e-3a4d-4e5f-8a7b-1c2d3e4f5a6b', deviceId: 1 };
    const give = kind ? await startGive(key.publicKeyPem, kind !== 'plain', kind === 'ice' ? { onSignal: (signal) => iceTunnels?.deliver(giveDevice, signal) } : undefined) : undefined;
    if (kind === 'ice') iceTunnels = new IceTunnels({ signaling: { send: async (_to, signal) => void give!.signal(signal) }, iceServers: async () => [], logger: silentLogger() }, { bindAddress: '127.0.0.1' });
    const h2 = new PeerTunnels(iceTunnels ? { ice: iceTunnels } : {});
    const icePeer = give ? { host: '127.0.0.1', port: give.port, identityKey: give.identityKey, ice: giveDevice } : undefined;
    const open: Opener =
      give && kind === 'ice' ? (port) => h2.open(icePeer!, ticket, { host: '127.0.0.1', port }) : give && kind ? openers(give.port, give, ticket, h2)[kind as 'plain' | 'tlsH1' | 'tlsH2'] : (port) => connectVia(undefined, port, auth);
    const b = await bulk(open, httpPort);
    const r = await rtts(open, echoPort, 5000);
    const { tunnels, giveCpu } = await tunnelCost(give, open, echoPort);
    // The same give peer behind a link with a 20 ms round trip (scripts/bench/delay-link.ts).
    let linkTunnels: number | undefined;
    let linkTunnels10: number | undefined;
    if (give && kind && kind !== 'ice') {
      for (const concurrent of [50, 10]) {
        const link = await delayLink(give.port, LINK_ONE_WAY_MS);
        const h2Far = new PeerTunnels();
        const rate = await tunnelsPerSecond(openers(link.port, { port: link.port, identityKey: give.identityKey }, ticket, h2Far)[kind], echoPort, false, concurrent);
        if (concurrent === 50) linkTunnels = rate;
        else linkTunnels10 = rate;
        h2Far.close();
        link.close();
      }
    }
    h2.close();
    await give?.stop();
    results.set(name, { bulk: b, p50: pct(r, 50), p99: pct(r, 99), tunnels, giveCpu, ...(linkTunnels === undefined ? {} : { linkTunnels }), ...(linkTunnels10 === undefined ? {} : { linkTunnels10 }) });
    console.log(
      `${name}: bulk ${b.toFixed(0)} MiB/s; echo RTT p50 ${pct(r, 50).toFixed(0)} us, p99 ${pct(r, 99).toFixed(0)} us; ` +
        `new tunnels at 50 concurrent ${tunnels.toFixed(0)}/s${give ? ` (give CPU ${giveCpu.toFixed(0)} us each)` : ''}` +
        `${linkTunnels === undefined || linkTunnels10 === undefined ? '' : `; opened over a 20 ms RTT link, 50 concurrent ${linkTunnels.toFixed(0)}/s (${((50 / linkTunnels) * 1000).toFixed(1)} ms each), 10 concurrent ${linkTunnels10.toFixed(0)}/s (${((10 / linkTunnels10) * 1000).toFixed(1)} ms each)`}`,
    );
  }
  const [direct, clear, tlsH1, tlsH2, overIce] = [...results.values()] as [Measured, Measured, Measured, Measured, Measured];
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  console.log(`plaintext give vs direct: bulk ${ratio(clear.bulk, direct.bulk)}x (target >= 0.36x); added RTT p50 ${(clear.p50 - direct.p50).toFixed(0)} us; tunnels ${ratio(clear.tunnels, direct.tunnels)}x`);
  console.log(`bulk through TLS vs plaintext: HTTP/1.1 ${ratio(tlsH1.bulk, clear.bulk)}x, HTTP/2 ${ratio(tlsH2.bulk, clear.bulk)}x (target >= 0.8x)`);
  console.log(
    `new tunnels/s over HTTP/2 vs plaintext, opened over a 20 ms RTT link: 10 concurrent ${ratio(tlsH2.linkTunnels10!, clear.linkTunnels10!)}x, 50 concurrent ${ratio(tlsH2.linkTunnels!, clear.linkTunnels!)}x ` +
      `(target >= 1.5x; TLS HTTP/1.1, a handshake per tunnel: ${ratio(tlsH1.linkTunnels10!, clear.linkTunnels10!)}x and ${ratio(tlsH1.linkTunnels!, clear.linkTunnels!)}x); ` +
      `opened and used on loopback, where a TCP handshake costs no time and both are CPU-bound, ${ratio(tlsH2.tunnels, clear.tunnels)}x, with give CPU per tunnel ${ratio(tlsH2.giveCpu, clear.giveCpu)}x`,
  );
  console.log(
    `give over WebRTC vs TLS give over HTTP/2: bulk ${ratio(overIce.bulk, tlsH2.bulk)}x (target >= 0.3x); added echo RTT p50 ${(overIce.p50 - tlsH2.p50).toFixed(0)} us (target <= 1000 us); ` +
      `new tunnels ${ratio(overIce.tunnels, tlsH2.tunnels)}x, with give CPU per tunnel ${ratio(overIce.giveCpu, tlsH2.giveCpu)}x`,
  );
  console.log(`added echo RTT p50 over plaintext: HTTP/2 ${(tlsH2.p50 - clear.p50).toFixed(0)} us, HTTP/1.1 ${(tlsH1.p50 - clear.p50).toFixed(0)} us (target <= +150 us)`);
  for (const [name, kind, useTls] of [
    ['plaintext', 'plain', false],
    ['TLS HTTP/1.1', 'tlsH1', true],
    ['TLS HTTP/2', 'tlsH2', true],
  ] as const) {
    const give = await startGive(key.publicKeyPem, useTls);
    const tunnels = new PeerTunnels();
    const cost = await idleCost(give, openers(give.port, give, ticket, tunnels)[kind], echoPort);
    console.log(`1,000 idle tunnels (${name}): ${cost.heap.toFixed(1)} KiB of JS heap and ${cost.rss.toFixed(1)} KiB RSS per tunnel in the give process (after GC; target <= 20 KiB)`);
    tunnels.close();
    await give.stop();
  }

  const viaGive = await startGive(key.publicKeyPem, false);
  const directAgent = new Agent({ connections: 50 });
  const viaProxy = new ProxyAgent({ uri: viaGive.url, token: auth, proxyTunnel: false, connections: 50 });
  const gd = await smallGets(directAgent, `http://127.0.0.1:${httpPort}/small`);
  const gp = await smallGets(viaProxy, `http://127.0.0.1:${httpPort}/small`);
  console.log(`plain HTTP forward small GETs/s at 50 concurrent (plaintext give): ${gp.toFixed(0)} vs ${gd.toFixed(0)} direct = ${(gp / gd).toFixed(2)}x (target >= 0.5x)`);

  await directAgent.close();
  await viaProxy.close();
  await viaGive.stop();
  origin.kill();
  nodeDataChannel.cleanup();
}
