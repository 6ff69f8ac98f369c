import type { ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';

/** A port of 127.0.0.1 free right now (for servers that cannot be told to use port 0). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

/** Waits until 127.0.0.1:port accepts connections; false if `child` exits or `limitMs` passes first. */
export async function waitForPort(port: number, child: ChildProcess, limitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + limitMs;
  while (child.exitCode === null && Date.now() < deadline) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Signals a child process (if it still runs) and waits for it to exit. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}
