import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { connect, createServer } from 'node:net';

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

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
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
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!up && child.exitCode === null && Date.now() < deadline) {
      up = await new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      });
      if (!up) await new Promise((r) => setTimeout(r, 50));
    }
    if (!up) {
      child.kill('SIGKILL');
      if (attempt < 3) continue;
      throw new Error(`redis-server did not start: ${out}`);
    }
    return {
      url: `redis://127.0.0.1:${port}`,
      port,
      child,
      stop: async () => {
        if (child.exitCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      },
    };
  }
}
