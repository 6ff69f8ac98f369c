import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { TOOLS } from './required-tools.js';

/**
 * tcpdump on the loopback interface, writing full packets that match `filter` to `file` (in
 * immediate mode: without it, packets wait in the kernel ring and the capture can end empty); resolves
 * once it listens. `stop()` ends it (its buffers flushed) and returns the capture's bytes.
 */
export async function captureLoopback(file: string, filter: string): Promise<{ stop(): Promise<Buffer> }> {
  const child = spawn(TOOLS.tcpdump.path, ['-i', 'lo', '--immediate-mode', '-U', '-s', '0', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump did not start: ${stderr}`)), 10_000);
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`tcpdump exited (${code}): ${stderr}`)));
  });
  return {
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
      return readFile(file);
    },
  };
}
