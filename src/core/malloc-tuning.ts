import { setFlagsFromString } from 'node:v8';

/**
 * Keeps glibc from handing freed socket-read buffers back to the kernel after every GC.
 *
 * Node reads each socket into a fresh 64 KiB buffer, allocated with malloc. A proxy moving a
 * gigabyte allocates 16,000 of them; every scavenge frees a batch, and glibc, whose default trim
 * threshold is 128 KiB, returns the now-free top of the heap to the kernel (brk/madvise). The next
 * reads then page-fault the same memory back in, zeroed, inside read(): under `perf`, page faults
 * were 26 % of give's CPU and read() 60 %, while the JavaScript relay itself was under 1 % a frame.
 * That is why give cost 2.4–4.0 CPU-seconds per GiB relayed where squid costs 1.1–1.4.
 *
 * glibc raises both thresholds by itself ("dynamic mmap threshold") the first time a chunk it
 * served with mmap is freed: mmap threshold to that chunk's size, trim threshold to twice it. So
 * one buffer just under the 32 MiB cap (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit), dropped at once,
 * sets them to ~32 MiB and ~64 MiB once its ArrayBuffer is collected. Measured on the bulk
 * transfer through give (1 GiB each way, loopback): 0.92–1.17 CPU-s/GiB and 860–1035 MiB/s up,
 * against 2.4–4.0 and 250–380 without; 4 or 8 MiB did not help. The same as setting
 * MALLOC_TRIM_THRESHOLD_/MALLOC_MMAP_THRESHOLD_ in the environment, without asking users to.
 *
 * The cost: up to ~64 MiB of memory freed inside the process is kept rather than returned, and
 * allocations below 32 MiB come from the heap. Other allocators (musl) ignore this; it does no harm.
 */
let done = false;

export function keepFreedHeap(): void {
  if (done) return;
  done = true;
  // allocUnsafeSlow: its own ArrayBuffer, not a slice of the pool, so it is freed on its own.
  Buffer.allocUnsafeSlow(32 * 2 ** 20 - 64 * 1024);
}

/**
 * Lets V8's old generation grow by a fixed factor of 4 after each full GC, for the proxying roles.
 *
 * Relaying promotes some read buffers (and their requests) to the old generation, a few MB a
 * second. V8 sets the old generation's limit after each full GC from its live size times a
 * factor it picks by itself; on a small heap (16–19 MB live) after an idle spell it picked limits
 * of 25–42 MB, so promotion reached them every ~70 ms: 12–18 full GCs a second for as long as a
 * bulk transfer lasted (`--trace-incremental-marking`: "Start (allocation limit): 16MB / 26MB"),
 * and give cost 1.8–2.0 CPU-s/GiB instead of 1.0–1.1. Which state a transfer met was a matter of
 * what the process had done before (a fresh process, a registered one that had sat idle), which is
 * why give's cost drifted with its age. With the factor fixed at 4 (V8's own ceiling for small
 * heaps), six bulk transfers in a row cost 0.90–1.04 CPU-s/GiB, none in a storm. The cost: a
 * heap up to 4× its live size before a full GC collects it, a few tens of MB for a proxy.
 */
export function growHeapInLargeSteps(): void {
  setFlagsFromString('--heap-growing-percent=300');
}
