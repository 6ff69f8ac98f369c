// A process's CPU time and memory, from /proc: what the benchmarks charge to a server or a proxy.
import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
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
      const fields = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      const s = (Number(fields[11]) + Number(fields[12])) / 100;
      if (Number(tid) === pid) main += s;
      else others += s;
    } catch {
      // the thread ended meanwhile
    }
  }
  return { main, others };
}
