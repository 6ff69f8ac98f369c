import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stopChild } from './processes.js';

/** Starts the official peer@1.0.2 server on 127.0.0.1 (port 0) in a child process. */
export async function startOfficialPeerjs(options: Record<string, unknown>): Promise<{ port: number; child: ChildProcess; stop(): Promise<void> }> {
  const script = fileURLToPath(new URL('./official-peerjs-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PEERJS_OPTIONS: JSON.stringify(options) } });
  child.stderr!.resume();
  const { port } = await new Promise<{ port: number }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { port: number }));
    child.once('exit', (code) => reject(new Error(`official peerjs server exited (${code})`)));
  });
  return {
    port,
    child,
    stop: () => stopChild(child),
  };
}
