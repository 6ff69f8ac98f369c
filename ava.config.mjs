// Two test files at a time (each runs its own tests concurrently): the suite waits on timers and
// child processes more than it computes, and one file at a time took 14.6 min on this 2-core
// machine against 8.3 with two. The files whose assertions are about timing under load (WebRTC
// through TURN between network namespaces; a Redis failover's liveness after kill -9) run after
// the rest, one at a time: `ava --config ava.alone.config.mjs` (see package.json's test script).
export const ALONE = ['src/e2e/nat.e2e.ts', 'src/e2e/redis-failover.e2e.ts'];

export const common = {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  workerThreads: false,
  timeout: '120s',
};

export default {
  ...common,
  files: ['src/**/*.test.ts', 'src/e2e/**/*.e2e.ts', ...ALONE.map((f) => `!${f}`)],
  concurrency: 2,
};
