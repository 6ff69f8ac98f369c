// Preloaded into the benchmarked server (node --expose-gc --require): SIGUSR2 runs a full GC, so
// the benchmark reads RSS without garbage left from earlier phases.
process.on('SIGUSR2', () => {
  global.gc();
  global.gc();
});
