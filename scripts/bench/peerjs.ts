// PeerJS broker benchmark: relayed messages per second and round-trip p50/p99 at 50 and 500 client
// pairs, through our broker (the built `lantern-agent server`) and through the official peer@1.0.2
// server, each in its own process, with the same load generator (this process, `ws` clients). Each
// pair ping-pongs a CANDIDATE with a ~1 KB payload ROUNDS times; a round trip is two relays.
// Then memory per idle client: RSS growth of each broker with BENCH_IDLE_CLIENTS (2000) registered ids
// that send nothing. A third target is the floor under both: the least a WebSocket relay on Node does
// for these messages (scripts/bench/peerjs-floor-child.ts: frames by hand, no JSON parse, no checks).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { CLI } from '../../src/testing/helpers/cli.js';
import { startOfficialPeerjs } from '../../src/testing/helpers/official-peerjs.js';
import { tempDir } from '../../src/testing/helpers/temp-dir.js';
import { firstJsonLine, TS_CHILD } from './child-output.js';
import { cpuSeconds, rssKiB } from './proc.js';

/** Round trips per pair: by default 100,000 per run in all (runs of about 4 s), at least 200 per pair. */
const roundsFor = (pairs: number) => Number(process.env['BENCH_ROUNDS'] ?? Math.max(200, Math.round(100_000 / pairs)));
const PAIRS = (process.env['BENCH_PAIRS'] ?? '50,500').split(',').map(Number);
const CANDIDATE = { candidate: `candidate:${randomBytes(480).toString('hex')} 1 udp 2122260223 127.0.0.1 9 typ host`, sdpMid: '0', sdpMLineIndex: 0 };

const IDLE_CLIENTS = Number(process.env['BENCH_IDLE_CLIENTS'] ?? 2000);

/**
 * Memory per idle client: the broker's RSS growth with IDLE_CLIENTS registered ids that send
 * nothing, over its RSS before they connected (after a first such round, so that buffers and
 * pools the first connections grow are not counted).
 */
async function idleMemory(base: string, pid: number): Promise<number> {
  const round = async () => {
    const tag = randomBytes(4).toString('hex');
    const before = rssKiB(pid);
    const sockets: WebSocket[] = [];
    for (let i = 0; i < IDLE_CLIENTS; i += 50) sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, IDLE_CLIENTS - i) }, (_, j) => open(base, `i${tag}${i + j}`)))));
    await new Promise((r) => setTimeout(r, 1000));
    const perClient = (rssKiB(pid) - before) / IDLE_CLIENTS;
    for (const ws of sockets) ws.terminate();
    await new Promise((r) => setTimeout(r, 1000));
    return perClient;
  };
  await round();
  return round();
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

function open(base: string, id: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}peerjs?key=peerjs&id=${id}&token=t${id}&version=1.5.5`);
    ws.once('message', (d) => (String(d).includes('"OPEN"') ? resolve(ws) : reject(new Error(String(d)))));
    ws.once('error', reject);
  });
}

async function run1(base: string, pid: number, pairs: number, ROUNDS = roundsFor(pairs)): Promise<{ msgsPerSecond: number; p50: number; p99: number; openSeconds: number; cpuMicros: number }> {
  const tag = randomBytes(4).toString('hex');
  const openedAt = performance.now();
  const sockets: Array<[WebSocket, WebSocket, string, string]> = [];
  for (let i = 0; i < pairs; i += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, pairs - i) }, async (_, j) => {
        const [a, b] = [`a${tag}${i + j}`, `b${tag}${i + j}`];
        return [await open(base, a), await open(base, b), a, b] as [WebSocket, WebSocket, string, string];
      }),
    );
    sockets.push(...batch);
  }
  const openSeconds = (performance.now() - openedAt) / 1000;
  const rtts: number[] = [];
  const cpuBefore = cpuSeconds(pid);
  const started = performance.now();
  await Promise.all(
    sockets.map(
      ([a, b, ia, ib]) =>
        new Promise<void>((resolve) => {
          let round = 0;
          let sentAt = 0;
          const ping = () => {
            sentAt = performance.now();
            a.send(JSON.stringify({ type: 'CANDIDATE', dst: ib, payload: { candidate: CANDIDATE, type: 'data', connectionId: 'dc_bench', round } }));
          };
          // b echoes every CANDIDATE back to a.
          b.on('message', (d) => {
            const f = JSON.parse(String(d)) as { type: string; payload: unknown };
            if (f.type === 'CANDIDATE') b.send(JSON.stringify({ type: 'CANDIDATE', dst: ia, payload: f.payload }));
          });
          a.on('message', (d) => {
            if (!String(d).startsWith('{"type":"CANDIDATE"')) return;
            rtts.push(performance.now() - sentAt);
            if (++round >= ROUNDS) resolve();
            else ping();
          });
          ping();
        }),
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  const cpuMicros = ((cpuSeconds(pid) - cpuBefore) * 1e6) / (pairs * ROUNDS * 2);
  for (const [a, b] of sockets) {
    a.terminate();
    b.terminate();
  }
  rtts.sort((x, y) => x - y);
  return { msgsPerSecond: (pairs * ROUNDS * 2) / seconds, p50: pct(rtts, 50), p99: pct(rtts, 99), openSeconds, cpuMicros };
}

export async function run(): Promise<void> {
  const dir = await tempDir('lantern-bench-peerjs-');
  const nodeArgs = (process.env['BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const server = spawn(process.execPath, [...nodeArgs, CLI, 'server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/data`, '--json', '--log-level', 'warn', '--max-connections', '0', '--max-connections-per-address', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = String((JSON.parse(await new Promise<string>((r) => createInterface({ input: server.stdout! }).once('line', r))) as { url: string }).url);
  const official = await startOfficialPeerjs({});
  const floor = spawn(process.execPath, [...TS_CHILD, fileURLToPath(new URL('./peerjs-floor-child.ts', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] });
  const floorPort = Number((await firstJsonLine(floor.stdout!, () => undefined))['port']);
  const targets = [
    { name: 'ours', base: `${url.replace(/^http/, 'ws')}/`, pid: server.pid! },
    { name: 'official peer@1.0.2', base: `ws://127.0.0.1:${official.port}/`, pid: official.child.pid! },
  ];
  if (process.env['BENCH_OFFICIAL_FIRST']) targets.reverse();
  targets.push({ name: 'floor (bare relay)', base: `ws://127.0.0.1:${floorPort}/`, pid: floor.pid! });
  console.log(`peerjs benchmark: ${PAIRS.map((p) => `${roundsFor(p)} round trips per pair at ${p} pairs`).join(', ')}, ~1 KB CANDIDATE payloads; load generator, our server and the official one share this machine`);
  try {
    for (const pairs of PAIRS) {
      const results: Record<string, Awaited<ReturnType<typeof run1>>> = {};
      for (const t of targets) {
        await run1(t.base, t.pid, Math.min(pairs, 20), 200); // warm-up
        results[t.name] = await run1(t.base, t.pid, pairs);
        const r = results[t.name]!;
        console.log(`  ${pairs} pairs, ${t.name.padEnd(20)} ${Math.round(r.msgsPerSecond).toLocaleString('en')} relayed msgs/s, RTT p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms broker CPU ${r.cpuMicros.toFixed(1)} µs/msg (opened ${pairs * 2} sockets in ${r.openSeconds.toFixed(2)} s)`);
      }
      const [o, off, bare] = [results['ours']!, results['official peer@1.0.2']!, results['floor (bare relay)']!];
      console.log(
        `  ${pairs} pairs: ours/official msgs/s ${(o.msgsPerSecond / off.msgsPerSecond).toFixed(2)}× (target ≥ 2×), p99 ${(o.p99 / off.p99).toFixed(2)}× (target ≤ 0.5×), ` +
          `broker CPU per message ${(o.cpuMicros / off.cpuMicros).toFixed(2)}× (the floor: ${(bare.cpuMicros / off.cpuMicros).toFixed(2)}×)`,
      );
    }
    const idle: Record<string, number> = {};
    for (const t of targets) {
      idle[t.name] = await idleMemory(t.base, t.pid);
      console.log(`  ${IDLE_CLIENTS} idle clients, ${t.name.padEnd(20)} ${idle[t.name]!.toFixed(1)} KiB RSS per client`);
    }
    console.log(`  memory per idle client: ours/official ${(idle['ours']! / idle['official peer@1.0.2']!).toFixed(2)}× (target ≤ 1×)`);
  } finally {
    server.kill('SIGTERM');
    floor.kill('SIGTERM');
    await official.stop();
    await new Promise((r) => server.once('exit', r));
    await dir.remove();
  }
}
