// `npm run bench -- NAME`: runs one benchmark and prints its numbers, with the machine's load
// average at the start and the end; it refuses to run when the machine is busy before it starts
// (scripts/bench/load.ts).
// What the benchmarks import from src runs as built, from dist/ (shipped-hooks.mjs): before any of them loads.
import './shipped.mjs';
import { loadAverage, quietEnough } from './load.js';

const benches: Record<string, () => Promise<void>> = {
  signaling: async () => (await import('./signaling.js')).run(),
  mailbox: async () => (await import('./mailbox.js')).run(),
  e2ee: async () => (await import('./e2ee.js')).run(),
  proxy: async () => (await import('./proxy.js')).run(),
  'proxy-peers': async () => (await import('./proxy-peers.js')).run(),
  verify: async () => (await import('./verify.js')).run(),
  peerjs: async () => (await import('./peerjs.js')).run(),
  cluster: async () => (await import('./cluster.js')).run(),
  webrtc: async () => (await import('./webrtc.js')).run(),
};

// The stores a benchmark writes for its server are private, as the CLI makes them (else the server
// warns about, and tightens, every file at start).
process.umask(0o077);

const name = process.argv[2];
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join('|')}>`);
  process.exitCode = 2;
} else {
  const quiet = await quietEnough();
  if (!quiet.ok) {
    console.error(`bench ${name}: refused: ${quiet.message}`);
    process.exitCode = 3;
  } else {
    console.log(`load average at start: ${quiet.load}`);
    await bench();
    console.log(`load average at end: ${loadAverage()}`);
  }
}
