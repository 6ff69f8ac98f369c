import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { TOOLS } from './required-tools.js';

export interface Coturn {
  host: string;
  port: number;
  /** What it logged so far. */
  log(): string;
}

/** A port free for both TCP and UDP on `host` (coturn takes no port 0); reserved only briefly. */
export async function freePort(host: string, launcher: string[] = []): Promise<number> {
  if (launcher.length) {
    // In a namespace: ask a child there (this process's sockets live in the host's namespace).
    const child = spawn(launcher[0]!, [...launcher.slice(1), process.execPath, '-e', `const s=require('net').createServer().listen(0,${JSON.stringify(host)},()=>{console.log(s.address().port);s.close()})`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [out] = (await once(child.stdout!, 'data')) as [Buffer];
    return Number(out.toString().trim());
  }
  for (;;) {
    const tcp = createServer();
    await new Promise<void>((resolve) => tcp.listen(0, host, resolve));
    const port = (tcp.address() as { port: number }).port;
    const udp = createSocket('udp4');
    const ok = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, host, () => resolve(true));
    });
    udp.close();
    await new Promise((r) => tcp.close(r));
    if (ok) return port;
  }
}

/**
 * coturn (Debian's turnserver) with the TURN REST API shared secret, on `host`, in a namespace
 * when `launcher` says so. Gone at the test's end.
 */
export async function startCoturn(
  t: { teardown(fn: () => Promise<unknown>): void },
  o: { host: string; secret: string; launcher?: string[]; allowLoopbackPeers?: boolean },
): Promise<Coturn> {
  const launcher = o.launcher ?? [];
  const port = await freePort(o.host, launcher);
  const files = { pid: `/tmp/lantern-coturn-${process.pid}-${port}.pid`, db: `/tmp/lantern-coturn-${process.pid}-${port}.db` };
  const args = [
    '-n',
    '--listening-ip', o.host,
    '--relay-ip', o.host,
    '--listening-port', String(port),
    '--use-auth-secret',
    '--static-auth-secret', o.secret,
    '--realm', 'lantern.test',
    '--no-tls',
    '--no-dtls',
    '--no-cli',
    '--fingerprint',
    '--verbose',
    '--log-file', 'stdout',
    '--simple-log',
    '--pidfile', files.pid,
    // Its own database file: the REST API scheme needs none, and /var/lib/turn is not ours.
    '--db', files.db,
    ...(o.allowLoopbackPeers ? ['--allow-loopback-peers'] : []),
    // As a TURN server on the internet should be run: never a relay into private networks (the
    // candidates of a home's own addresses get 403). In the lab the wan has no route to them
    // either, and coturn ends an allocation whose relay could not send (ENETUNREACH).
    ...['10.0.0.0-10.255.255.255', '172.16.0.0-172.31.255.255', '192.168.0.0-192.168.255.255'].flatMap((range) => ['--denied-peer-ip', range]),
  ];
  const command = [...launcher, TOOLS.turnserver.path, ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
    // Killed, it leaves its files behind.
    await Promise.all(Object.values(files).map((f) => rm(f, { force: true })));
  });
  const started = Date.now();
  while (!/Total General servers: \d/.test(log)) {
    if (child.exitCode !== null || Date.now() - started > 10_000) throw new Error(`coturn did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host: o.host, port, log: () => log };
}
