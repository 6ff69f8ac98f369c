// A process's CPU time and memory, from /proc: what the benchmarks charge to a server or a proxy.
import { readdirSync, readFileSync } from 'node:fs';

/** User + system CPU seconds from a `stat` file of /proc (a process's, or one thread's). */
function statCpu(path: string): number {
  const stat = readFileSync(path, 'utf8');
  // After the command name, which may itself hold ") ".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  return statCpu(`/proc/${pid}/stat`);
}

/** Resident memory of a process, in KiB. */
export function rssKiB(pid: number): number {
  return (Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096) / 1024;
}

/** CPU seconds of a process's main thread (the event loop, for Node) and of its other threads together. */
export function cpuSecondsByThread(pid: number): { main: number; others: number } {
  let main = 0;
  let others = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const s = statCpu(`/proc/${pid}/task/${tid}/stat`);
      if (Number(tid) === pid) main += s;
      else others += s;
    } catch {
      // the thread ended meanwhile
    }
  }
  return { main, others };
}
