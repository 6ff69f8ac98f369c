// `npm run bench -- NAME`: runs one benchmark and prints its numbers.
const benches: Record<string, () => Promise<void>> = {
  signaling: async () => (await import('./signaling.js')).run(),
  e2ee: async () => (await import('./e2ee.js')).run(),
  proxy: async () => (await import('./proxy.js')).run(),
  verify: async () => (await import('./verify.js')).run(),
  peerjs: async () => (await import('./peerjs.js')).run(),
  cluster: async () => (await import('./cluster.js')).run(),
  webrtc: async () => (await import('./webrtc.js')).run(),
};

const name = process.argv[2];
const bench = name ? benches[name] : undefined;
if (!bench) {
  console.error(`usage: npm run bench -- <${Object.keys(benches).join('|')}>`);
  process.exitCode = 2;
} else {
  await bench();
}
