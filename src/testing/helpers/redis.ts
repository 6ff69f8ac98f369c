import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { freePort, stopChild, waitForPort } from './processes.js';

export const REDIS_SERVER = '/usr/bin/redis-server';

export const redisInstalled = () =>
  access(REDIS_SERVER).then(
    () => true,
    () => false,
  );

export interface RunningRedis {
  url: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Debian's redis-server on a free port of 127.0.0.1, its files in `dir`, no snapshots. */
export async function startRedis(dir: string): Promise<RunningRedis> {
  await mkdir(dir, { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    if (!(await waitForPort(port, child))) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      throw new Error(`redis-server did not start: ${out}`);
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      child,
      stop: () => stopChild(child),
    };
  }
}
