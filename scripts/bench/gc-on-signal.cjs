// Preloaded into the benchmarked server (node --expose-gc --require): SIGUSR2 runs a full GC and,
// when BENCH_MEM_FILE is set, writes process.memoryUsage() there, so the benchmark reads memory
// without garbage left from earlier phases.
process.on('SIGUSR2', () => {
  global.gc();
  global.gc();
  if (process.env.BENCH_MEM_FILE) require('node:fs').writeFileSync(process.env.BENCH_MEM_FILE, JSON.stringify(process.memoryUsage()));
});
