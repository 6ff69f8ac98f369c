import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { TOOLS } from './required-tools.js';
import { freePort, stopChild, waitForPort } from './processes.js';
import { testTlsFiles } from './tls.js';

export const REDIS_SERVER = TOOLS['redis-server'].path;
export const REDIS_CLI = TOOLS['redis-cli'].path;

export interface RunningRedis {
  url: string;
  port: number;
  /** With `tls`: the file of the CA that signed the server's certificate. */
  caFile?: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Debian's redis-server on a free port of 127.0.0.1, its files in `dir`, no snapshots. With `tls`
 * it speaks only TLS (a certificate for 127.0.0.1 from a CA made in `dir`); with `password` it
 * requires AUTH. The URL carries both (rediss://:PASSWORD@…).
 */
export async function startRedis(dir: string, options: { tls?: boolean; password?: string; extra?: string[] } = {}): Promise<RunningRedis> {
  await mkdir(dir, { recursive: true });
  const secure: string[] = [];
  let caFile: string | undefined;
  if (options.tls) {
    const files = await testTlsFiles(`${dir}/tls`, ['127.0.0.1', 'localhost']);
    caFile = files.caFile;
    secure.push('--tls-cert-file', files.certFile, '--tls-key-file', files.keyFile, '--tls-ca-cert-file', files.caFile, '--tls-auth-clients', 'no');
  }
  if (options.password !== undefined) secure.push('--requirepass', options.password);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const listen = options.tls ? ['--port', '0', '--tls-port', String(port)] : ['--port', String(port)];
    const child = spawn(REDIS_SERVER, [...listen, '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...secure, ...(options.extra ?? [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    if (!(await waitForPort(port, child))) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      throw new Error(`redis-server did not start: ${out}`);
    }
    const auth = options.password !== undefined ? `:${encodeURIComponent(options.password)}@` : '';
    return {
      url: `${options.tls ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`,
      port,
      ...(caFile ? { caFile } : {}),
      child,
      stop: () => stopChild(child),
    };
  }
}

export interface RunningRedisCluster {
  /** redis://HOST:PORT,HOST:PORT,… (every master), as `--store` takes a cluster. */
  url: string;
  nodes: RunningRedis[];
  stop(): Promise<void>;
}

/**
 * A Redis Cluster of Debian's redis-server: `masters` nodes (at least 3) with `replicasPerMaster`
 * replicas each, made with `redis-cli --cluster create`, returned once every node reports
 * cluster_state:ok. Each node's files are under `dir/<n>`.
 */
export async function startRedisCluster(dir: string, options: { masters?: number; replicasPerMaster?: number } = {}): Promise<RunningRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 0;
  const nodes: RunningRedis[] = [];
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      nodes.push(await startRedis(`${dir}/${i}`, { extra: ['--cluster-enabled', 'yes', '--cluster-config-file', `${dir}/${i}/nodes.conf`, '--cluster-node-timeout', '2000'] }));
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    const created = spawnSync(REDIS_CLI, ['--cluster', 'create', ...addresses, '--cluster-replicas', String(replicas), '--cluster-yes'], { encoding: 'utf8', timeout: 60_000 });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
    const deadline = Date.now() + 30_000;
    for (const n of nodes) {
      for (;;) {
        const info = spawnSync(REDIS_CLI, ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8', timeout: 5000 }).stdout ?? '';
        // Ready: the cluster is up and, with replicas, every master has its replicas in sync.
        const replication = replicas > 0 ? (spawnSync(REDIS_CLI, ['-p', String(n.port), 'info', 'replication'], { encoding: 'utf8', timeout: 5000 }).stdout ?? '') : '';
        const synced = replicas === 0 || (replication.includes('role:master') ? new RegExp(`connected_slaves:${replicas}\\b`).test(replication) && !/state=(wait_bgsave|send_bulk)/.test(replication) : replication.includes('master_link_status:up'));
        if (info.includes('cluster_state:ok') && synced) break;
        if (Date.now() > deadline) throw new Error(`the Redis Cluster did not become ready: ${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { url: `redis://${addresses.slice(0, masters).join(',')}`, nodes, stop: async () => void (await Promise.all(nodes.map((n) => n.stop()))) };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
}
