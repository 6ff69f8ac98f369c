import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { TOOLS } from './required-tools.js';
import { freePort, stopChild, waitForPort } from './processes.js';
import { testTlsFiles } from './tls.js';

export const REDIS_SERVER = TOOLS['redis-server'].path;

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
export async function startRedis(dir: string, options: { tls?: boolean; password?: string } = {}): Promise<RunningRedis> {
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
    const child = spawn(REDIS_SERVER, [...listen, '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...secure], {
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
