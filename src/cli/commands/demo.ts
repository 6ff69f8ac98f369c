import { createHash, randomBytes } from 'node:crypto';
import { Resolver } from 'node:dns/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough, Readable } from 'node:stream';
import { Command } from 'commander';
import { fetch, ProxyAgent } from 'undici';
import { LanternError } from '../../core/errors.js';
import { stopAll } from '../../core/lifecycle.js';
import { listen } from '../../net/listen.js';
import { writeJson, writeLine, type Io } from '../io.js';

/** Runs one lantern-agent command line in this process with its own Io (main, passed in). */
export type RunCommand = (argv: string[], io: Io) => Promise<number>;

interface DemoFlags {
  keepRunning?: boolean;
  dir?: string;
  json?: boolean;
  logLevel: string;
}

/** A command started inside the demo: its NDJSON lines, its stderr, and a way to stop it. */
interface Running {
  name: string;
  events: Array<Record<string, unknown>>;
  stderr(): string;
  stop(): Promise<number>;
  exited: Promise<number>;
}

const ZONE = 'demo.lantern';
const PAGE_TITLE = 'Hello from the open web';

export function demoCommand(io: Io, done: (code: number) => void, run: RunCommand): Command {
  return new Command('demo')
    .description('The whole network on this machine in one command: server, two give peers, a verifier, a get client; a page fetched and an encrypted message sent')
    .option('--keep-running', 'leave the network running afterwards (until Ctrl-C)')
    .option('--dir <dir>', 'keep the demo data here (default: a temporary directory, removed at the end)')
    .option('--json', 'print each step as NDJSON')
    .option('--log-level <level>', 'log level of the roles (stderr, JSON)', 'error')
    .action(async (flags: DemoFlags) => done(await new Demo(io, run, flags).run()));
}

/**
 * The demo drives the real commands (the same code paths as `lantern-agent server`, `give`, …), each
 * in this process with its own Io, on an embedded LevelDB store in a scratch directory.
 */
class Demo {
  readonly #running: Running[] = [];
  #step = 0;
  #site: Server | undefined;

  constructor(
    private readonly io: Io,
    private readonly runCommand: RunCommand,
    private readonly flags: DemoFlags,
  ) {}

  #say(title: string, text: string, data: Record<string, unknown> = {}): void {
    this.#step++;
    if (this.flags.json) writeJson(this.io.stdout, { step: this.#step, title, text, ...data });
    else writeLine(this.io.stdout, `[${this.#step}] ${title.padEnd(12)} ${text}`);
  }

  /** Runs a command to its end; its stdout lines (NDJSON) are returned. */
  async #once(argv: string[], stdin = ''): Promise<Array<Record<string, unknown>>> {
    const started = this.#start(argv, stdin);
    const code = await started.exited;
    if (code !== 0) throw new LanternError('LA_ERR_DEMO_FAILED', `demo step \`${argv.join(' ')}\` failed (exit ${code}): ${started.stderr().trim()}`);
    return started.events;
  }

  /** Starts a long-running command and waits until one of its NDJSON lines satisfies `ready`. */
  async #role(name: string, argv: string[], ready: (line: Record<string, unknown>) => boolean, limitMs = 30_000): Promise<Running> {
    const role = this.#start(argv, '', name);
    this.#running.push(role);
    const deadline = Date.now() + limitMs;
    while (!role.events.some(ready)) {
      const exited = await Promise.race([role.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 50))]);
      if (exited) throw new LanternError('LA_ERR_DEMO_FAILED', `${name} stopped early: ${role.stderr().trim()}`);
      if (Date.now() > deadline) throw new LanternError('LA_ERR_DEMO_FAILED', `${name} was not ready within ${limitMs / 1000} s: ${role.stderr().trim()}`);
    }
    return role;
  }

  #start(argv: string[], stdin: string, name = argv[0]!): Running {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let err = '';
    stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const events: Array<Record<string, unknown>> = [];
    createInterface({ input: stdout }).on('line', (line) => {
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        events.push({ text: line });
      }
    });
    let stop!: (signal: string) => void;
    const stopSignal = new Promise<string>((resolve) => (stop = resolve));
    // The demo's roles take their options from the demo alone, not from the user's LANTERN_* variables.
    const env = Object.fromEntries(Object.entries(this.io.env).filter(([k]) => !k.startsWith('LANTERN_')));
    const exited = this.runCommand(['node', 'lantern-agent', ...argv], { stdout, stderr, stdin: Readable.from([stdin]), env, stopSignal });
    return {
      name,
      events,
      stderr: () => err,
      exited,
      stop: async () => {
        stop('SIGTERM');
        return exited;
      },
    };
  }

  async run(): Promise<number> {
    const dir = this.flags.dir ?? (await mkdtemp(join(tmpdir(), 'lantern-demo-')));
    try {
      await this.#network(dir);
      if (this.flags.keepRunning) {
        writeLine(this.io.stderr, 'the network keeps running; Ctrl-C stops it');
        await this.io.stopSignal;
      }
      return 0;
    } finally {
      await stopAll(this.#running);
      await new Promise<void>((resolve) => (this.#site ? this.#site.close(() => resolve()) : resolve()));
      this.#site?.closeAllConnections();
      if (!this.flags.dir) await rm(dir, { recursive: true, force: true });
    }
  }

  async #network(dir: string): Promise<void> {
    const quiet = ['--json', '--log-level', this.flags.logLevel];
    // A web site on this machine stands in for the open web.
    const page = Buffer.from(`<!doctype html><title>${PAGE_TITLE}</title><p>${randomBytes(2048).toString('base64')}</p>\n`);
    this.#site = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html', 'content-length': page.length }).end(page));
    const site = await listen(this.#site, '127.0.0.1', 0);
    const siteUrl = `http://127.0.0.1:${site.port}/`;

    const dataDir = join(dir, 'server');
    const server = await this.#role('server', ['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--dns-listen', '127.0.0.1:0', '--zone', ZONE, ...quiet], (e) => e['event'] === 'listening');
    const url = String(server.events.find((e) => e['event'] === 'listening')?.['url']);
    const dnsPort = Number(server.events.find((e) => e['event'] === 'dns-listening')?.['port']);
    this.#say('server', `${url} on the embedded LevelDB store in ${dataDir}; DNS zone ${ZONE} on 127.0.0.1:${dnsPort}`, { url, dnsPort });

    const accounts: Array<[string, 'user' | 'verifier']> = [
      ['alice', 'user'],
      ['bob', 'user'],
      ['volunteer-1', 'user'],
      ['volunteer-2', 'user'],
      ['verifier', 'verifier'],
    ];
    const ids: Record<string, string> = {};
    const home = (name: string) => join(dir, `home-${name}`);
    for (const [name, role] of accounts) {
      const password = randomBytes(12).toString('base64url');
      await this.#once(['account', 'add', name, '--role', role, '--data-dir', dataDir, '--password-stdin', '--json'], `${password}\n`);
      const [login] = await this.#once(['login', '--server', url, '--user', name, '--password-stdin', '--home', home(name), '--json'], `${password}\n`);
      ids[name] = String(login?.['userId']);
    }
    this.#say('accounts', `alice and bob (users), volunteer-1 and volunteer-2 (give), verifier; each logged in: an anonymized id, an X.509 device certificate and Signal keys (alice is ${ids['alice']})`, { userIds: ids });

    const gives: Array<{ name: string; port: number; peerId: string }> = [];
    for (const name of ['volunteer-1', 'volunteer-2']) {
      const give = await this.#role(name, ['give', '--listen', '127.0.0.1:0', '--home', home(name), '--allow-private-destinations', ...quiet], (e) => e['event'] === 'registered');
      const registered = give.events.find((e) => e['event'] === 'registered')!;
      gives.push({ name, port: Number(registered['port']), peerId: String(registered['peerId']) });
    }
    this.#say('give', `${gives.map((g) => `${g.name} shares a proxy on 127.0.0.1:${g.port}`).join(', ')}; both registered as unverified candidates`, { gives });

    const passed = new Set<string>();
    const verify = await this.#role('verifier', ['verify', '--home', home('verifier'), '--interval', '2s', '--timeout', '3s', ...quiet], (v) => {
      if (v['ok'] === true) passed.add(String(v['peerId']));
      return gives.every((g) => passed.has(g.peerId));
    });
    const verdicts = gives.map((g) => verify.events.find((v) => v['peerId'] === g.peerId && v['ok'] === true)!);
    this.#say(
      'verify',
      `fetched a fresh canary through each give peer and checked its identity: ${verdicts.map((v, i) => `${gives[i]!.name} passed (${String(v['latencyMs'])} ms)`).join(', ')}; both are in the round robin`,
      { verdicts },
    );

    await this.#dns(dnsPort, gives.length);

    const get = await this.#role('get', ['get', '--listen', '127.0.0.1:0', '--home', home('alice'), ...quiet], (e) => e['event'] === 'listening');
    const proxyUrl = String(get.events.find((e) => e['event'] === 'listening')?.['url']);
    this.#say('get', `alice's local proxy on ${proxyUrl} (HTTP CONNECT, HTTP forward, SOCKS5), through ${String(get.events[0]?.['upstreams'])} verified give peer(s)`, { proxyUrl });

    await this.#fetchThrough(proxyUrl, siteUrl, page);

    await this.#message(ids, home);

    if (this.flags.keepRunning) {
      this.#say('running', `try: curl -x ${proxyUrl} ${siteUrl}   |   dig @127.0.0.1 -p ${dnsPort} roundrobin.${ZONE}   |   data in ${dir}`);
    } else {
      this.#say('done', 'every step worked; stopping the network');
    }
  }

  /** The round robin over DNS: SRV and A answers from the server's zone. */
  async #dns(dnsPort: number, gives: number): Promise<void> {
    const resolver = new Resolver({ timeout: 1000, tries: 3 });
    resolver.setServers([`127.0.0.1:${dnsPort}`]);
    let srv: Array<{ port: number }> = [];
    for (let i = 0; i < 40 && srv.length < gives; i++) {
      srv = await resolver.resolveSrv(`_proxy._tcp.roundrobin.${ZONE}`).catch(() => []);
      if (srv.length < gives) await new Promise((r) => setTimeout(r, 100));
    }
    const addresses = await resolver.resolve4(`roundrobin.${ZONE}`).catch(() => []);
    this.#say('dns', `roundrobin.${ZONE} A ${addresses.join(', ') || '(none)'}; SRV ports ${srv.map((r) => r.port).sort().join(', ')}`, { addresses, srvPorts: srv.map((r) => r.port) });
  }

  /** The page through get and a verified give peer, byte for byte. */
  async #fetchThrough(proxyUrl: string, siteUrl: string, page: Buffer): Promise<void> {
    const agent = new ProxyAgent(proxyUrl);
    try {
      const res = await fetch(siteUrl, { dispatcher: agent });
      const body = Buffer.from(await res.arrayBuffer());
      const intact = createHash('sha256').update(body).digest('hex') === createHash('sha256').update(page).digest('hex');
      if (res.status !== 200 || !intact) throw new LanternError('LA_ERR_DEMO_FAILED', `the page came back ${res.status}, ${body.length} bytes, ${intact ? 'intact' : 'changed'}`);
      this.#say('fetch', `GET ${siteUrl} through get -> a verified give peer: ${res.status}, ${body.length} bytes, sha256 matches ("${PAGE_TITLE}")`, { status: res.status, bytes: body.length });
    } finally {
      await agent.close();
    }
  }

  /** An end-to-end encrypted message from alice to bob. */
  async #message(ids: Record<string, string>, home: (name: string) => string): Promise<void> {
    const text = `Hi Bob, this is Alice at ${new Date().toISOString()}`;
    await this.#once(['send', '--to', ids['bob']!, text, '--home', home('alice'), '--json']);
    const received = await this.#once(['inbox', '--wait', '10', '--home', home('bob'), '--json']);
    const got = received.find((m) => m['text'] === text);
    if (!got) throw new LanternError('LA_ERR_DEMO_FAILED', `bob did not receive the message: ${JSON.stringify(received)}`);
    this.#say('message', `alice -> bob, end-to-end encrypted with the Signal protocol (the server stored only ciphertext); bob read: "${text}"`, { text, encrypted: got['encrypted'] });
  }
}
