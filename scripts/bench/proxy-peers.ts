// Side-by-side proxy benchmark (issue 19): our give and get next to the proxies people would pick
// instead (squid, dante, tinyproxy, microsocks, from Debian), all on loopback in one run, in
// interleaved rounds (each round measures every proxy once, in a new order), medians reported.
//
// For each proxy: bulk up and down through one tunnel (1 GiB each way unless BENCH_BULK_MIB), the
// proxy's CPU-seconds per GiB moved (its processes' utime + stime from /proc over both transfers;
// for get → give also get's and give's together, in the round's line),
// echo round trip p50/p99 on an established tunnel, new tunnels per second at 50 concurrent openers
// (each used for one round trip) and the proxy's CPU-µs per tunnel (for get → give also get's and
// give's together, and the benchmark client's own, in the round's line), RSS per idle tunnel with
// 1,000 open (its processes, from /proc, after 1,000 were opened and closed once), small GETs per
// second through the proxy's plain-HTTP forward (with the CPU-µs per GET of the proxy, of get and
// give together, of the destinations and of the benchmark client, in the round's line) and through
// 50 CONNECT (or SOCKS5) tunnels kept alive. The destinations run in a process of their own
// (scripts/bench/origin-child.ts), so "direct" crosses processes too. One more row, the floor: the
// least a CONNECT proxy on Node does (scripts/bench/node-relay-child.ts: no checks, Node's pipe),
// measured like give.
//
// Prints a Markdown table with each number's ratio to direct and to the best reference; with
// `--readme` it also writes that table into the README's performance section.
// Env: BENCH_ROUNDS (3), BENCH_BULK_MIB (1024), BENCH_SECONDS (3, per timed case), BENCH_ONLY (a
// regular expression: only the ways whose name matches it, and direct, are measured; not with --readme),
// BENCH_CHILD_NODE_ARGS (node flags for our give and get processes, e.g. --trace-incremental-marking;
// their stdout then goes to stderr). Each row also prints the proxy's minor page faults per MiB.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { generateTicketKey, TicketIssuer } from '../../src/crypto/tickets.js';
import { connectHttp1, connectPinned, PeerTunnels } from '../../src/net/tunnel.js';
import { firstJsonLine, TS_CHILD } from './child-output.js';
import { loadAverage } from './load.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const BULK_MIB = Number(process.env['BENCH_BULK_MIB'] ?? 1024);
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 3);
const CHILD_NODE_ARGS = (process.env['BENCH_CHILD_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
const ONLY = process.env['BENCH_ONLY'] ? new RegExp(process.env['BENCH_ONLY']) : undefined;
const IDLE = 1000;
const CONCURRENT = 50;
const RTT_COUNT = 5000;
const CLK_TCK = 100;
const PAGE = 4096;

/** Opens a tunnel to 127.0.0.1:port through the proxy. */
type Opener = (port: number) => Promise<Duplex>;

interface Contestant {
  name: string;
  /** A reference server (the best of these is what ours are compared with). */
  reference: boolean;
  /** The processes whose CPU and memory are the proxy's. */
  pids: number[];
  /** Every process of ours a tunnel crosses, when more than `pids` (get → give: get's and give's). */
  chainPids?: number[];
  open: Opener;
  /** A dispatcher for plain-HTTP GETs: through the proxy's forward (absolute-form requests), or direct. */
  forward?: () => Dispatcher;
  /** Ours: a full GC in the processes (SIGUSR2 to a child started with --expose-gc), before memory is read. */
  collectGarbage?: () => Promise<void>;
  stop(): Promise<void>;
}

interface Sample {
  up: number;
  down: number;
  cpuPerGiB?: number;
  /** The same for every process the bulk transfers cross (get → give: get's and give's). */
  chainCpuPerGiB?: number;
  /** Minor page faults of the proxy per MiB moved in the bulk transfers (glibc giving memory back and taking it again). */
  faultsPerMiB?: number;
  p50: number;
  p99: number;
  tunnels: number;
  /** CPU-µs of the proxy's processes per tunnel opened in the new-tunnels case. */
  cpuPerTunnel?: number;
  /** The same for every process the tunnel crosses (get → give: get's and give's), and for the benchmark's own client. */
  chainCpuPerTunnel?: number;
  clientCpuPerTunnel: number;
  rssPerTunnel?: number;
  forwardGets?: number;
  /** CPU-µs per forwarded GET: the proxy's processes, every process of ours the request crosses, the destinations' process, the benchmark client. */
  forwardCpu?: { proxy: number; chain: number; origin: number; client: number };
  connectGets: number;
}

// -------------------------------------------------------------------------------------------------
// The processes' CPU and memory, from /proc (a whole tree: dante runs children of its own).

function children(): Map<number, number[]> {
  const byParent = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      byParent.set(ppid, [...(byParent.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  return byParent;
}

function tree(roots: number[]): number[] {
  const byParent = children();
  const out: number[] = [];
  const queue = [...roots];
  while (queue.length) {
    const pid = queue.shift()!;
    out.push(pid);
    queue.push(...(byParent.get(pid) ?? []));
  }
  return out;
}

/** The sum of some fields of /proc/PID/stat (0-based, counted from field 3, the state) over the processes and their descendants. */
function statSum(roots: number[], fields: number[]): number {
  let sum = 0;
  for (const pid of tree(roots)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      for (const i of fields) sum += Number(f[i]);
    } catch {
      // gone meanwhile
    }
  }
  return sum;
}

/** CPU-seconds: utime, stime, cutime, cstime (fields 14–17, 1-based), so with reaped children. */
const cpuSeconds = (roots: number[]) => statSum(roots, [11, 12, 13, 14]) / CLK_TCK;

/** CPU-seconds each list of processes spends from now until the returned function is called. */
function cpuWindow(...lists: number[][]): () => number[] {
  const start = lists.map(cpuSeconds);
  return () => lists.map((roots, i) => cpuSeconds(roots) - start[i]!);
}

/** Minor page faults: minflt and cminflt (fields 10–11), so with reaped children (dante forks). */
const minorFaults = (roots: number[]) => statSum(roots, [7, 8]);

/** Resident memory, bytes, of the processes and their descendants. */
function rssBytes(roots: number[]): number {
  let pages = 0;
  for (const pid of tree(roots)) {
    try {
      pages += Number(readFileSync(`/proc/${pid}/statm`, 'latin1').split(' ')[1]);
    } catch {
      // gone meanwhile
    }
  }
  return pages * PAGE;
}

// -------------------------------------------------------------------------------------------------
// Clients: tunnels through an HTTP proxy (CONNECT) or a SOCKS5 proxy.

async function dial(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.setNoDelay(true);
  await once(s, 'connect');
  return s;
}

/** Reads from `s` until `done(buffer)` gives how many bytes it used; the rest is put back. */
async function readUntil(s: Duplex, done: (b: Buffer) => number | undefined): Promise<Buffer> {
  let buffer = Buffer.alloc(0);
  for (;;) {
    const used = done(buffer);
    if (used !== undefined) {
      if (buffer.length > used) s.unshift(buffer.subarray(used));
      return buffer.subarray(0, used);
    }
    const chunk = s.read() as Buffer | null;
    if (chunk) buffer = Buffer.concat([buffer, chunk]);
    else {
      await new Promise<void>((resolve, reject) => {
        const readable = () => {
          off();
          resolve();
        };
        const closed = () => {
          off();
          reject(new Error('the tunnel closed before the answer came'));
        };
        const off = () => {
          s.off('readable', readable);
          s.off('close', closed);
          s.off('error', closed);
        };
        s.on('readable', readable);
        s.on('close', closed);
        s.on('error', closed);
      });
    }
  }
}

function httpConnect(proxyPort: number, auth?: string): Opener {
  return async (port) => {
    const s = await dial(proxyPort);
    s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`);
    const head = (await readUntil(s, (b) => (b.indexOf('\r\n\r\n') >= 0 ? b.indexOf('\r\n\r\n') + 4 : undefined))).toString('latin1');
    if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`CONNECT failed: ${head.split('\r\n')[0]}`);
    return s;
  };
}

function socks5(proxyPort: number, credentials?: { user: string; pass: string }): Opener {
  return async (port) => {
    const s = await dial(proxyPort);
    const method = credentials ? 2 : 0;
    const request = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]);
    const auth = credentials ? Buffer.concat([Buffer.from([1, credentials.user.length]), Buffer.from(credentials.user), Buffer.from([credentials.pass.length]), Buffer.from(credentials.pass)]) : Buffer.alloc(0);
    // Step by step, as curl does (microsocks takes nothing sent ahead of its answer).
    s.write(Buffer.from([5, 1, method]));
    const chosen = await readUntil(s, (b) => (b.length >= 2 ? 2 : undefined));
    if (chosen[1] !== method) throw new Error(`SOCKS5 method refused: ${chosen.toString('hex')}`);
    if (credentials) {
      s.write(auth);
      const authed = await readUntil(s, (b) => (b.length >= 2 ? 2 : undefined));
      if (authed[1] !== 0) throw new Error('SOCKS5 credentials refused');
    }
    s.write(request);
    const reply = await readUntil(s, (b) => (b.length >= 10 ? 10 : undefined));
    if (reply[1] !== 0) throw new Error(`SOCKS5 failed: ${reply.toString('hex')}`);
    return s;
  };
}

// -------------------------------------------------------------------------------------------------
// The measurements.

async function bulkDown(open: Opener, httpPort: number): Promise<number> {
  const s = await open(httpPort);
  const start = performance.now();
  s.write(`GET /bulk/${BULK_MIB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  let n = 0;
  await new Promise<void>((resolve, reject) => {
    s.on('data', (chunk: Buffer) => (n += chunk.length));
    s.once('end', resolve);
    s.once('error', reject);
  });
  s.destroy();
  if (n < BULK_MIB * 2 ** 20) throw new Error(`bulk down: ${n} bytes came`);
  return n / 2 ** 20 / ((performance.now() - start) / 1000);
}

const UP_CHUNK = Buffer.alloc(256 * 1024, 7);

async function bulkUp(open: Opener, sinkPort: number): Promise<number> {
  const s = await open(sinkPort);
  const bytes = BULK_MIB * 2 ** 20;
  const start = performance.now();
  const length = Buffer.alloc(8);
  length.writeBigUInt64BE(BigInt(bytes));
  s.write(length);
  const acked = new Promise<void>((resolve, reject) => {
    s.once('data', () => resolve());
    s.once('error', reject);
    s.once('close', () => reject(new Error('bulk up: closed before the sink had it all')));
  });
  for (let sent = 0; sent < bytes; sent += UP_CHUNK.length) if (!s.write(UP_CHUNK)) await once(s, 'drain');
  await acked;
  s.destroy();
  return bytes / 2 ** 20 / ((performance.now() - start) / 1000);
}

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function rtts(open: Opener, echoPort: number): Promise<number[]> {
  const s = await open(echoPort);
  const out: number[] = [];
  const one = Buffer.from([1]);
  for (let i = 0; i < RTT_COUNT; i++) {
    const t0 = performance.now();
    s.write(one);
    await once(s, 'data');
    out.push((performance.now() - t0) * 1000);
  }
  s.destroy();
  return out.sort((a, b) => a - b);
}

async function tunnelsPerSecond(open: Opener, echoPort: number): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      while (performance.now() < until) {
        const s = await open(echoPort);
        s.on('error', () => undefined);
        s.write('x');
        await once(s, 'data');
        s.destroy();
        n++;
      }
    }),
  );
  return n / SECONDS;
}

async function idleRss(c: Contestant, echoPort: number): Promise<number> {
  const openMany = async () => {
    const idle: Duplex[] = [];
    for (let i = 0; i < IDLE; i += CONCURRENT) idle.push(...(await Promise.all(Array.from({ length: CONCURRENT }, () => c.open(echoPort)))));
    for (const s of idle) s.on('error', () => undefined);
    return idle;
  };
  const settle = () => new Promise((r) => setTimeout(r, 500));
  for (const s of await openMany()) s.destroy();
  await settle();
  await c.collectGarbage?.();
  const before = rssBytes(c.pids);
  const idle = await openMany();
  await settle();
  await c.collectGarbage?.();
  const after = rssBytes(c.pids);
  for (const s of idle) s.destroy();
  await settle();
  return (after - before) / IDLE / 1024;
}

/**
 * A GET on a kept-alive connection that the proxy closed as it was sent fails with "other side
 * closed"; a browser sends it again (RFC 9112 §9.3.1), and so does this, a few times a run at most.
 */
const FORWARD_RETRIES = 20;

async function forwardGets(dispatcher: Dispatcher, url: string): Promise<{ perSecond: number; retried: number }> {
  let n = 0;
  let retried = 0;
  const until = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      while (performance.now() < until) {
        let r: Dispatcher.ResponseData;
        try {
          r = await request(url, { dispatcher });
        } catch (err) {
          if ((err as { code?: string }).code !== 'UND_ERR_SOCKET' || ++retried > FORWARD_RETRIES) throw err;
          continue;
        }
        await r.body.dump();
        if (r.statusCode !== 200) throw new Error(`forward GET: ${r.statusCode}`);
        n++;
      }
    }),
  );
  return { perSecond: n / SECONDS, retried };
}

/** Small keep-alive GETs, one after another, on each of 50 tunnels: what a browser does through CONNECT. */
async function connectGets(open: Opener, httpPort: number): Promise<number> {
  let n = 0;
  const until = performance.now() + SECONDS * 1000;
  const ask = Buffer.from('GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await Promise.all(
    Array.from({ length: CONCURRENT }, async () => {
      const s = await open(httpPort);
      s.on('error', () => undefined);
      while (performance.now() < until) {
        s.write(ask);
        // The origin answers each with Content-Length 2.
        await readUntil(s, (b) => {
          const end = b.indexOf('\r\n\r\n');
          return end >= 0 && b.length >= end + 6 ? end + 6 : undefined;
        });
        n++;
      }
      s.destroy();
    }),
  );
  return n / SECONDS;
}

/** The step's result, or an error naming the proxy and the step when it takes longer than `ms`. */
async function step<T>(c: Contestant, name: string, ms: number, work: () => Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => (timer = setTimeout(() => reject(new Error(`${c.name}: ${name} took more than ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([work(), timeout]);
  } catch (err) {
    // Which proxy and which step, not only what the client saw.
    if (err instanceof Error && !err.message.startsWith(`${c.name}: `)) err.message = `${c.name}: ${name}: ${err.message}`;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Loopback connections in TIME_WAIT (state 06 in /proc/net/tcp and tcp6). */
function timeWaits(): number {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    try {
      n += readFileSync(file, 'latin1').split('\n').filter((line) => line.trim().split(/\s+/)[3] === '06').length;
    } catch {
      // no IPv6
    }
  }
  return n;
}

/**
 * Waits (at most 70 s) until fewer than 8,000 connections are in TIME_WAIT. Each way opens some
 * 10,000–30,000 connections a round, and a proxy that binds its outgoing sockets before connecting
 * (dante) cannot take a local port that a TIME_WAIT holds: after a few ways in a row it ran out of
 * the 28,000 (SOCKS5 reply 3, "network unreachable").
 */
async function portsSettled(): Promise<void> {
  const until = performance.now() + 70_000;
  while (timeWaits() >= 8000 && performance.now() < until) await new Promise((r) => setTimeout(r, 1000));
}

async function measure(c: Contestant, ports: { httpPort: number; echoPort: number; sinkPort: number; originPid: number }): Promise<Sample> {
  await portsSettled();
  // A bulk transfer slower than 4 MiB/s, or a timed case that does not end, is a failure to report.
  const bulkMs = (BULK_MIB / 4) * 1000 + 10_000;
  const timedMs = SECONDS * 1000 + 30_000;
  const chain = c.chainPids ?? c.pids;
  const bulkCpu = cpuWindow(c.pids, chain);
  const faults0 = minorFaults(c.pids);
  const up = await step(c, 'bulk up', bulkMs, () => bulkUp(c.open, ports.sinkPort));
  const down = await step(c, 'bulk down', bulkMs, () => bulkDown(c.open, ports.httpPort));
  const [cpu, chainCpu] = bulkCpu();
  const faults = minorFaults(c.pids) - faults0;
  const r = await step(c, 'echo round trips', 60_000, () => rtts(c.open, ports.echoPort));
  await portsSettled();
  const [openingCpu, clientCpu0] = [cpuWindow(c.pids, chain), process.cpuUsage()];
  const tunnels = await step(c, 'new tunnels', timedMs, () => tunnelsPerSecond(c.open, ports.echoPort));
  const clientCpu = process.cpuUsage(clientCpu0);
  const [proxyPerTunnel, chainPerTunnel, clientPerTunnel] = [...openingCpu(), (clientCpu.user + clientCpu.system) / 1e6].map((seconds) => (seconds * 1e6) / (tunnels * SECONDS));
  const rss = c.pids.length ? await step(c, 'idle tunnels', 60_000, () => idleRss(c, ports.echoPort)) : undefined;
  const url = `http://127.0.0.1:${ports.httpPort}/small`;
  let forward: number | undefined;
  let forwardCpu: Sample['forwardCpu'];
  if (c.forward) {
    const dispatcher = c.forward();
    const [forwardingCpu, clientCpu1] = [cpuWindow(c.pids, chain, [ports.originPid]), process.cpuUsage()];
    const f = await step(c, 'forward GETs', timedMs, () => forwardGets(dispatcher, url));
    const own = process.cpuUsage(clientCpu1);
    const [proxy, chained, origin, client] = [...forwardingCpu(), (own.user + own.system) / 1e6].map((seconds) => (seconds * 1e6) / (f.perSecond * SECONDS));
    forward = f.perSecond;
    forwardCpu = { proxy: proxy!, chain: chained!, origin: origin!, client: client! };
    if (f.retried) console.error(`${c.name}: ${f.retried} forward GET(s) sent again after the proxy closed a kept-alive connection`);
    await dispatcher.close();
  }
  const viaConnect = await step(c, 'GETs in tunnels', timedMs, () => connectGets(c.open, ports.httpPort));
  return {
    up,
    down,
    ...(c.pids.length ? { cpuPerGiB: cpu / ((2 * BULK_MIB) / 1024), chainCpuPerGiB: chainCpu / ((2 * BULK_MIB) / 1024), faultsPerMiB: faults / (2 * BULK_MIB) } : {}),
    p50: pct(r, 50),
    p99: pct(r, 99),
    tunnels,
    ...(c.pids.length ? { cpuPerTunnel: proxyPerTunnel, chainCpuPerTunnel: chainPerTunnel } : {}),
    clientCpuPerTunnel: clientPerTunnel!,
    ...(rss === undefined ? {} : { rssPerTunnel: rss }),
    ...(forward === undefined ? {} : { forwardGets: forward }),
    ...(forwardCpu === undefined ? {} : { forwardCpu }),
    connectGets: viaConnect,
  };
}

/** A forward GET's CPU, as a round's line says it (what two shared cores divide between them). */
function forwardCpuLine(cpu: Sample['forwardCpu'], chained: boolean): string {
  if (!cpu) return '';
  const proxy = cpu.proxy ? ` proxy ${cpu.proxy.toFixed(0)},${chained ? ` get + give ${cpu.chain.toFixed(0)},` : ''}` : '';
  return ` (CPU-µs each:${proxy} origin ${cpu.origin.toFixed(0)}, client ${cpu.client.toFixed(0)})`;
}

// -------------------------------------------------------------------------------------------------
// The proxies.

const REFERENCES = { squid: ['/usr/sbin/squid', 'squid'], danted: ['/usr/sbin/danted', 'dante-server'], tinyproxy: ['/usr/bin/tinyproxy', 'tinyproxy'], microsocks: ['/usr/bin/microsocks', 'microsocks'] } as const;

/** Installs the reference servers from Debian if any is missing (as root, as CI does), else says how. */
function ensureReferences(): void {
  const missing = Object.values(REFERENCES).filter(([bin]) => !existsSync(bin));
  if (!missing.length) return;
  const packages = missing.map(([, pkg]) => pkg);
  if (process.getuid?.() !== 0) throw new Error(`the reference proxies are missing: apt-get install -y ${packages.join(' ')}`);
  console.log(`installing the reference proxies: ${packages.join(' ')}`);
  execFileSync('apt-get', ['update'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', ...packages], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/** A free loopback port for a server that cannot listen on port 0 and tell us. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Waits until something accepts connections on the port. */
async function listening(port: number, child: ChildProcess, name: string): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before listening`);
    try {
      (await dial(port)).destroy();
      return;
    } catch {
      if (Date.now() > until) throw new Error(`${name} is not listening on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function stopper(child: ChildProcess): () => Promise<void> {
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
}

async function startSquid(dir: string): Promise<Contestant> {
  const port = await freePort();
  const conf = join(dir, 'squid.conf');
  // A forwarding proxy and nothing else: no cache, no logs, every port allowed from loopback.
  await writeFile(
    conf,
    [
      `http_port 127.0.0.1:${port}`,
      'http_access allow localhost',
      'http_access deny all',
      'cache deny all',
      'cache_mem 0 MB',
      'access_log none',
      `cache_log ${join(dir, 'squid-cache.log')}`,
      `pid_filename ${join(dir, 'squid.pid')}`,
      `coredump_dir ${dir}`,
      'max_filedescriptors 16384',
      'shutdown_lifetime 0 seconds',
      'forwarded_for delete',
      'via off',
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/squid', ['-N', '-f', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  await listening(port, child, 'squid');
  const uri = `http://127.0.0.1:${port}`;
  return { name: 'squid', reference: true, pids: [child.pid!], open: httpConnect(port), forward: () => new ProxyAgent({ uri, proxyTunnel: false, connections: CONCURRENT }), stop: stopper(child) };
}

async function startTinyproxy(dir: string): Promise<Contestant> {
  const port = await freePort();
  const conf = join(dir, 'tinyproxy.conf');
  await writeFile(
    conf,
    [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 600', 'MaxClients 4096', 'Allow 127.0.0.1', 'LogLevel Critical', 'DisableViaHeader Yes', 'User nobody', 'Group nogroup', `PidFile "${join(dir, 'tinyproxy.pid')}"`, ''].join('\n'),
  );
  const child = spawn('/usr/bin/tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] });
  await listening(port, child, 'tinyproxy');
  const uri = `http://127.0.0.1:${port}`;
  return { name: 'tinyproxy', reference: true, pids: [child.pid!], open: httpConnect(port), forward: () => new ProxyAgent({ uri, proxyTunnel: false, connections: CONCURRENT }), stop: stopper(child) };
}

async function startDante(dir: string): Promise<Contestant> {
  const port = await freePort();
  const conf = join(dir, 'danted.conf');
  await writeFile(
    conf,
    [
      'logoutput: /dev/null',
      `internal: 127.0.0.1 port = ${port}`,
      'external: 127.0.0.1',
      'clientmethod: none',
      'socksmethod: none',
      ...(process.getuid?.() === 0 ? ['user.privileged: root', 'user.unprivileged: nobody'] : []),
      'client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }',
      'socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }',
      '',
    ].join('\n'),
  );
  const child = spawn('/usr/sbin/danted', ['-f', conf, '-p', join(dir, 'danted.pid')], { stdio: ['ignore', 'ignore', 'inherit'] });
  await listening(port, child, 'dante');
  return { name: 'dante', reference: true, pids: [child.pid!], open: socks5(port), stop: stopper(child) };
}

async function startMicrosocks(): Promise<Contestant> {
  const port = await freePort();
  // (microsocks logs every connection on stderr.)
  const child = spawn('/usr/bin/microsocks', ['-i', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  await listening(port, child, 'microsocks');
  return { name: 'microsocks', reference: true, pids: [child.pid!], open: socks5(port), stop: stopper(child) };
}

/** A node child of this benchmark that prints one JSON line when it is up. */
async function nodeChild(script: string, env: Record<string, string>): Promise<{ child: ChildProcess; first: Record<string, unknown> }> {
  const child = spawn(process.execPath, ['--expose-gc', ...CHILD_NODE_ARGS, ...TS_CHILD, fileURLToPath(new URL(script, import.meta.url))], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] });
  // V8's traces (BENCH_CHILD_NODE_ARGS) go to stderr.
  const first = await firstJsonLine(child.stdout!, (line) => CHILD_NODE_ARGS.length && process.stderr.write(`${line}\n`));
  return { child, first };
}

async function startOurs(key: { publicKeyPem: string; privateKeyPem: string }): Promise<{ contestants: Contestant[]; stop(): Promise<void> }> {
  const ticket = new TicketIssuer(key.privateKeyPem).issue({ v: 1, sub: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', exp: Date.now() + 24 * 3600_000 });
  const auth = `Basic ${Buffer.from(`ticket:${ticket}`).toString('base64')}`;
  const plain = await nodeChild('./give-child.ts', { TICKET_PUBLIC_KEY: key.publicKeyPem, GIVE_TLS: '0' });
  const tls = await nodeChild('./give-child.ts', { TICKET_PUBLIC_KEY: key.publicKeyPem, GIVE_TLS: '1' });
  const plainPort = Number(new URL(String(plain.first['url'])).port);
  const tlsPeer = { host: '127.0.0.1', port: Number(new URL(String(tls.first['url'])).port), identityKey: String(tls.first['identityKey']) };
  const get = await nodeChild('./get-child.ts', { TICKET_PRIVATE_KEY: key.privateKeyPem, GIVE_PORT: String(tlsPeer.port), GIVE_IDENTITY_KEY: tlsPeer.identityKey });
  const getPort = Number(new URL(String(get.first['url'])).port);
  const floor = await nodeChild('./node-relay-child.ts', {});
  const h2 = new PeerTunnels();
  const pid = (c: { child: ChildProcess }) => c.child.pid!;
  const collect = (c: { child: ChildProcess }) => async () => {
    c.child.kill('SIGUSR2');
    await new Promise((r) => setTimeout(r, 300));
  };
  const contestants: Contestant[] = [
    {
      name: 'give (plaintext, CONNECT)',
      reference: false,
      pids: [pid(plain)], collectGarbage: collect(plain),
      open: httpConnect(plainPort, auth),
      forward: () => new ProxyAgent({ uri: `http://127.0.0.1:${plainPort}`, token: auth, proxyTunnel: false, connections: CONCURRENT }),
      stop: async () => undefined,
    },
    { name: 'give (plaintext, SOCKS5)', reference: false, pids: [pid(plain)], collectGarbage: collect(plain), open: socks5(plainPort, { user: 'ticket', pass: ticket }), stop: async () => undefined },
    {
      name: 'give (TLS, HTTP/1.1 CONNECT)',
      reference: false,
      pids: [pid(tls)], collectGarbage: collect(tls),
      open: async (port) => connectHttp1(await connectPinned(tlsPeer, 5000, ['http/1.1']), ticket, { host: '127.0.0.1', port }, 5000),
      stop: async () => undefined,
    },
    { name: 'give (TLS, HTTP/2 CONNECT)', reference: false, pids: [pid(tls)], collectGarbage: collect(tls), open: (port) => h2.open(tlsPeer, ticket, { host: '127.0.0.1', port }), stop: async () => undefined },
    {
      name: 'get → give (CONNECT)',
      reference: false,
      pids: [pid(get)], chainPids: [pid(get), pid(tls)], collectGarbage: collect(get),
      open: httpConnect(getPort),
      forward: () => new ProxyAgent({ uri: `http://127.0.0.1:${getPort}`, proxyTunnel: false, connections: CONCURRENT }),
      stop: async () => undefined,
    },
    { name: 'get → give (SOCKS5)', reference: false, pids: [pid(get)], chainPids: [pid(get), pid(tls)], collectGarbage: collect(get), open: socks5(getPort), stop: async () => undefined },
    {
      name: 'floor: bare Node relay (CONNECT, no checks)',
      reference: false,
      pids: [pid(floor)], collectGarbage: collect(floor),
      open: httpConnect(Number(new URL(String(floor.first['url'])).port)),
      stop: async () => undefined,
    },
  ];
  return {
    contestants,
    stop: async () => {
      h2.close();
      await Promise.all([get, plain, tls, floor].map((c) => stopper(c.child)()));
    },
  };
}

// -------------------------------------------------------------------------------------------------
// The table.

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

type Metric = { key: keyof Sample; label: string; higherIsBetter: boolean; digits: number };
const METRICS: Metric[] = [
  { key: 'up', label: 'bulk up MiB/s', higherIsBetter: true, digits: 0 },
  { key: 'down', label: 'bulk down MiB/s', higherIsBetter: true, digits: 0 },
  { key: 'cpuPerGiB', label: 'proxy CPU s/GiB', higherIsBetter: false, digits: 2 },
  { key: 'p50', label: 'echo RTT p50 µs', higherIsBetter: false, digits: 0 },
  { key: 'p99', label: 'echo RTT p99 µs', higherIsBetter: false, digits: 0 },
  { key: 'tunnels', label: 'new tunnels/s', higherIsBetter: true, digits: 0 },
  { key: 'cpuPerTunnel', label: 'proxy CPU µs per new tunnel', higherIsBetter: false, digits: 0 },
  { key: 'rssPerTunnel', label: 'RSS KiB per idle tunnel', higherIsBetter: false, digits: 1 },
  { key: 'forwardGets', label: 'small GETs/s, forward', higherIsBetter: true, digits: 0 },
  { key: 'connectGets', label: 'small GETs/s, in tunnels', higherIsBetter: true, digits: 0 },
];

function table(results: Map<string, { reference: boolean; samples: Sample[] }>): string {
  const value = (name: string, key: keyof Sample) => {
    const xs = results
      .get(name)!
      .samples.map((s) => s[key])
      .filter((x): x is number => x !== undefined);
    return xs.length ? median(xs) : undefined;
  };
  const best = new Map<keyof Sample, { name: string; value: number }>();
  for (const m of METRICS) {
    for (const [name, r] of results) {
      const v = value(name, m.key);
      if (!r.reference || v === undefined) continue;
      const b = best.get(m.key);
      if (!b || (m.higherIsBetter ? v > b.value : v < b.value)) best.set(m.key, { name, value: v });
    }
  }
  const lines = [`| proxy | ${METRICS.map((m) => m.label).join(' | ')} |`, `|---|${METRICS.map(() => '---:').join('|')}|`];
  for (const [name, r] of results) {
    const cells = METRICS.map((m) => {
      const v = value(name, m.key);
      if (v === undefined) return '–';
      const parts: string[] = [];
      const direct = m.key === 'cpuPerGiB' || m.key === 'cpuPerTunnel' || m.key === 'rssPerTunnel' ? undefined : value('direct', m.key);
      if (name !== 'direct' && direct !== undefined) parts.push(`${(v / direct).toFixed(2)}× direct`);
      const b = best.get(m.key);
      // A ratio to a best that shows as 0 (a reference using next to no memory per idle tunnel,
      // 0.03 KiB: "218×") says nothing the two numbers do not.
      if (!r.reference && name !== 'direct' && b && Number(b.value.toFixed(m.digits)) !== 0) parts.push(`${(v / b.value).toFixed(2)}× ${b.name}`);
      const cell = `${v.toFixed(m.digits)}${parts.length ? ` (${parts.join(', ')})` : ''}`;
      return cell;
    });
    lines.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export async function run(): Promise<void> {
  const writeReadme = process.argv.includes('--readme');
  ensureReferences();
  const loadStart = loadAverage();
  const dir = await mkdtemp(join(tmpdir(), 'lantern-proxy-peers-'));
  // The references drop to an unprivileged user when started as root: their files must be theirs to write.
  await chmod(dir, 0o777);
  const origin = await nodeChild('./origin-child.ts', {});
  const ports = { ...(origin.first as { httpPort: number; echoPort: number; sinkPort: number }), originPid: origin.child.pid! };
  const key = generateTicketKey();
  const ours = await startOurs(key);
  const references = [await startSquid(dir), await startDante(dir), await startTinyproxy(dir), await startMicrosocks()];
  const directContestant: Contestant = { name: 'direct', reference: false, pids: [], open: dial, forward: () => new Agent({ connections: CONCURRENT }), stop: async () => undefined };
  const all = [directContestant, ...references, ...ours.contestants].filter((c) => c === directContestant || !ONLY || ONLY.test(c.name));
  if (ONLY && writeReadme) throw new Error('BENCH_ONLY measures some of the ways: the README table needs them all');
  const results = new Map(all.map((c) => [c.name, { reference: c.reference, samples: [] as Sample[] }]));
  console.log(`proxy-peers: ${all.length} ways, ${ROUNDS} interleaved rounds, ${BULK_MIB} MiB each way, ${SECONDS} s per timed case`);
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      // Each round in a new order, so that no proxy always runs on a machine warmed (or heated) by the same one.
      const order = [...all].sort(() => Math.random() - 0.5);
      for (const c of order) {
        const sample = await measure(c, ports);
        results.get(c.name)!.samples.push(sample);
        console.log(
          `round ${round}: ${c.name}: up ${sample.up.toFixed(0)} down ${sample.down.toFixed(0)} MiB/s` +
            `${sample.cpuPerGiB === undefined ? '' : `, ${sample.cpuPerGiB.toFixed(2)} CPU-s/GiB${c.chainPids ? ` (get + give ${sample.chainCpuPerGiB!.toFixed(2)})` : ''}, ${sample.faultsPerMiB!.toFixed(1)} faults/MiB`}, RTT p50 ${sample.p50.toFixed(0)} µs, ${sample.tunnels.toFixed(0)} tunnels/s` +
            ` (CPU-µs each:${sample.cpuPerTunnel === undefined ? '' : ` proxy ${sample.cpuPerTunnel.toFixed(0)},`}${c.chainPids ? ` get + give ${sample.chainCpuPerTunnel!.toFixed(0)},` : ''} client ${sample.clientCpuPerTunnel.toFixed(0)})` +
            `${sample.rssPerTunnel === undefined ? '' : `, ${sample.rssPerTunnel.toFixed(1)} KiB/idle tunnel`}${sample.forwardGets === undefined ? '' : `, forward ${sample.forwardGets.toFixed(0)} GETs/s${forwardCpuLine(sample.forwardCpu, c.chainPids !== undefined)}`}, in tunnels ${sample.connectGets.toFixed(0)} GETs/s`,
        );
      }
    }
  } finally {
    await Promise.all([...references.map((c) => c.stop()), ours.stop()]);
    origin.child.kill();
    await rm(dir, { recursive: true, force: true });
  }
  const loadEnd = loadAverage();
  const md = table(results);
  const header =
    `Medians of ${ROUNDS} interleaved rounds on loopback (${BULK_MIB} MiB each way, ${SECONDS} s per timed case, ${CONCURRENT} concurrent, ${IDLE} idle tunnels); ` +
    `load average ${loadStart} at start, ${loadEnd} at end. Ratios: to direct, and to the best reference on that row. ` +
    'CPU and memory are the proxy processes’ own (for get → give, get’s; give’s are in its rows). From `npm run bench -- proxy-peers`.';
  console.log(`\n${header}\n\n${md}\n`);
  if (writeReadme) {
    const readmePath = fileURLToPath(new URL('../../README.md', import.meta.url));
    const readme = await readFile(readmePath, 'utf8');
    const start = '<!-- proxy-peers:start -->';
    const end = '<!-- proxy-peers:end -->';
    if (!readme.includes(start) || !readme.includes(end)) throw new Error(`README.md has no ${start} … ${end} section to write`);
    await writeFile(readmePath, `${readme.slice(0, readme.indexOf(start) + start.length)}\n${header}\n\n${md}\n${readme.slice(readme.indexOf(end))}`);
    console.log('README.md: performance section written');
  }
}
