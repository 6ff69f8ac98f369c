// The official PeerJS server (peer@1.0.2, a dev dependency) in its own process, for the conformance
// suite and the benchmark. Env: PEERJS_OPTIONS (JSON, IConfig fields). Prints {"port": N}.
import { PeerServer } from 'peer';

const options = JSON.parse(process.env['PEERJS_OPTIONS'] ?? '{}') as Record<string, unknown>;
PeerServer({ host: '127.0.0.1', port: 0, path: '/', key: 'peerjs', ...options }, (server) => {
  const addr = server.address();
  console.log(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }));
});
// Its own bug (a non-JSON frame) throws outside any handler; keep serving like its CLI does.
process.on('uncaughtException', (err) => console.error(`official peerjs server: ${err.message}`));
