import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { tempDir } from './temp-dir.js';
import { TOOLS } from './required-tools.js';

const run = promisify(execFile);

/**
 * Home routers in network namespaces, made and removed by a test:
 *
 *   [wan]  bridge br0 11.0.0.1/24 (the server, verifiers, origins: "the internet")
 *     ├── [router-1] wan0 11.0.0.11 ─ NAT (iptables MASQUERADE) ─ lan0 192.168.1.1 ── [home-1] 192.168.1.2
 *     └── [router-2] wan0 11.0.0.12 ─ NAT ─ lan0 192.168.2.1 ── [home-2] 192.168.2.2
 *
 * The wan segment is 11.0.0.0/24 because miniupnpd will not map ports on a router whose own
 * address is reserved (10/8, 100.64/10, TEST-NETs…), as a real router behind another NAT would
 * not. The namespaces have no link to the host's network: no packet leaves them.
 */
export interface NatLab {
  /** The wan namespace's address (give the server this to listen on). */
  readonly wanAddress: '11.0.0.1';
  readonly wan: string;
  readonly homes: NatHome[];
  /** `ip netns exec NS`: a launcher for startRole / runCli. */
  exec(ns: string): string[];
  /** Runs a command in a namespace; its stdout. */
  sh(ns: string, command: string[]): Promise<string>;
  /** miniupnpd (UPnP-IGD and PCP/NAT-PMP) on a home's router. */
  startMiniupnpd(home: NatHome): Promise<Miniupnpd>;
  /**
   * Makes a home's router a symmetric NAT: a fresh random source port for every new destination
   * (MASQUERADE --random-fully), so the address a STUN server sees is not the one a peer would.
   */
  makeSymmetric(home: NatHome): Promise<void>;
}

export interface NatHome {
  /** The home's namespace (where give or get runs). */
  ns: string;
  /** Its router's namespace. */
  router: string;
  address: string;
  gateway: string;
  /** The router's public address, which the server sees connections from. */
  publicAddress: string;
}

export interface Miniupnpd {
  /** What it logged so far (it runs with -d). */
  log(): string;
  /** The router's port forwards (its nftables chain), as `nft` lists them. */
  forwards(): Promise<string>;
}

/** Whether this process may make network namespaces (root, or CAP_SYS_ADMIN and CAP_NET_ADMIN). */
export async function canMakeNamespaces(): Promise<boolean> {
  const name = `la-probe-${randomBytes(3).toString('hex')}`;
  try {
    await run(TOOLS.ip.path, ['netns', 'add', name]);
    await run(TOOLS.ip.path, ['netns', 'del', name]);
    return true;
  } catch {
    return false;
  }
}

/** The nftables chains miniupnpd's nftables backend writes its forwards into (its defaults). */
const MINIUPNPD_NFT = `table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`;

/** Makes the lab with `homes` home networks; everything goes at the test's end. */
export async function natLab(t: { teardown(fn: () => Promise<unknown>): void }, homes = 2): Promise<NatLab> {
  const id = randomBytes(3).toString('hex');
  const made: string[] = [];
  const children: ChildProcess[] = [];
  const dir = await tempDir('lantern-natlab-');
  t.teardown(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined)));
    for (const ns of made.reverse()) await run(TOOLS.ip.path, ['netns', 'del', ns]).catch(() => undefined);
    await dir.remove();
  });
  // Absolute paths: npm puts node_modules/.bin first on PATH, and a package there is also called `nft`.
  const ip = (...args: string[]) => run(TOOLS.ip.path, args);
  const netns = async (name: string) => {
    await ip('netns', 'add', name);
    made.push(name);
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    return name;
  };
  const inNs = (ns: string, ...args: string[]) => run(TOOLS.ip.path, ['netns', 'exec', ns, ...args]);

  const wan = await netns(`la-${id}-wan`);
  await ip('-n', wan, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', wan, 'addr', 'add', '11.0.0.1/24', 'dev', 'br0');
  await ip('-n', wan, 'link', 'set', 'br0', 'up');

  const list: NatHome[] = [];
  for (let i = 1; i <= homes; i++) {
    const router = await netns(`la-${id}-r${i}`);
    const home = await netns(`la-${id}-h${i}`);
    const publicAddress = `11.0.0.${10 + i}`;
    const gateway = `192.168.${i}.1`;
    const address = `192.168.${i}.2`;
    // Each veth is made with its ends already in their namespaces: no name is ever in the host's.
    await ip('-n', router, 'link', 'add', 'wan0', 'type', 'veth', 'peer', 'name', `r${i}`, 'netns', wan);
    await ip('-n', wan, 'link', 'set', `r${i}`, 'master', 'br0', 'up');
    await ip('-n', router, 'addr', 'add', `${publicAddress}/24`, 'dev', 'wan0');
    await ip('-n', router, 'link', 'set', 'wan0', 'up');
    await ip('-n', router, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', home);
    await ip('-n', router, 'addr', 'add', `${gateway}/24`, 'dev', 'lan0');
    await ip('-n', router, 'link', 'set', 'lan0', 'up');
    await ip('-n', home, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    await ip('-n', home, 'link', 'set', 'eth0', 'up');
    await ip('-n', home, 'route', 'add', 'default', 'via', gateway);
    await inNs(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1');
    await inNs(router, TOOLS.iptables.path, '-t', 'nat', '-A', 'POSTROUTING', '-o', 'wan0', '-j', 'MASQUERADE');
    // A home router's own firewall (OpenWrt's wan zone: input REJECT): nothing unasked for from the
    // internet reaches the router itself. Without it a stray packet to the router's address leaves
    // a conntrack entry that makes MASQUERADE pick another port for the home's next flow to the
    // same peer, which no home router in the field does (ICE's checks through two NATs then fail).
    await inNs(router, TOOLS.iptables.path, '-A', 'INPUT', '-i', 'wan0', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP');
    list.push({ ns: home, router, address, gateway, publicAddress });
  }

  return {
    wanAddress: '11.0.0.1',
    wan,
    homes: list,
    exec: (ns) => [TOOLS.ip.path, 'netns', 'exec', ns],
    sh: async (ns, command) => (await inNs(ns, ...command)).stdout,
    async makeSymmetric(home) {
      await inNs(home.router, TOOLS.iptables.path, '-t', 'nat', '-R', 'POSTROUTING', '1', '-o', 'wan0', '-j', 'MASQUERADE', '--random-fully');
    },
    async startMiniupnpd(home) {
      const nft = join(dir.path, `${home.router}.nft`);
      await writeFile(nft, MINIUPNPD_NFT);
      await inNs(home.router, TOOLS.nft.path, '-f', nft);
      const conf = join(dir.path, `${home.router}.conf`);
      await writeFile(
        conf,
        [
          'ext_ifname=wan0',
          'listening_ip=lan0',
          'enable_natpmp=yes',
          'enable_upnp=yes',
          'secure_mode=yes',
          'system_uptime=yes',
          // PCP leases as short as a test asks for (routers default to 120 s at least).
          'min_lifetime=2',
          `uuid=${randomUUIDish()}`,
          `lease_file=${join(dir.path, `${home.router}.leases`)}`,
          'allow 1024-65535 192.168.0.0/16 1024-65535',
          'deny 0-65535 0.0.0.0/0 0-65535',
          '',
        ].join('\n'),
      );
      const child = spawn(TOOLS.ip.path, ['netns', 'exec', home.router, TOOLS.miniupnpd.path, '-d', '-f', conf, '-P', join(dir.path, `${home.router}.pid`)], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.push(child);
      let log = '';
      const append = (d: Buffer) => (log += d.toString());
      child.stdout!.on('data', append);
      child.stderr!.on('data', append);
      // Ready once it listens for NAT-PMP/PCP (it logs that after the HTTP port for UPnP).
      const started = Date.now();
      while (!/Listening for NAT-PMP/.test(log)) {
        if (child.exitCode !== null || Date.now() - started > 10_000) throw new Error(`miniupnpd did not start: ${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return {
        log: () => log,
        forwards: async () => (await inNs(home.router, TOOLS.nft.path, 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd')).stdout,
      };
    },
  };
}

function randomUUIDish(): string {
  const h = randomBytes(16).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * An origin in a namespace: a Node HTTP server answering GET /page with `size` random bytes.
 * Returns its URL and the page's sha256.
 */
export async function startOrigin(t: { teardown(fn: () => Promise<unknown>): void }, launcher: string[], host: string, size = 1 << 20): Promise<{ url: string; sha256: string }> {
  const script = `
    const { createServer } = require('node:http');
    const { randomBytes, createHash } = require('node:crypto');
    const page = randomBytes(${size});
    const server = createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': page.length }); res.end(page); });
    server.listen(0, ${JSON.stringify(host)}, () => console.log(JSON.stringify({ port: server.address().port, sha256: createHash('sha256').update(page).digest('hex') })));
  `;
  const child = spawn(launcher[0]!, [...launcher.slice(1), process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill();
      await once(child, 'exit');
    }
  });
  const [line] = (await once(child.stdout!, 'data')) as [Buffer];
  const { port, sha256 } = JSON.parse(line.toString()) as { port: number; sha256: string };
  return { url: `http://${host}:${port}/page`, sha256 };
}
