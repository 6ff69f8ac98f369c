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
