import { createServer } from 'node:http';
import test from 'ava';
import { silentLogger } from '../../core/logger.js';
import { listen } from '../../net/listen.js';
import { peerjsConformance, type BrokerTarget } from '../../testing/compliance/peerjs-broker.js';
import { startOfficialPeerjs } from '../../testing/helpers/official-peerjs.js';
import { defaultPeerjsOptions, PeerjsBroker } from './peerjs-broker.js';

// The same black-box suite against our broker and against the official peer@1.0.2 server, with the
// same settings: what passes on both is what PeerJS clients rely on; [improvement] checks are ours.

const settings = { expireTimeoutMs: 2000, aliveTimeoutMs: 2000, concurrentLimit: 20 };
const ours = {} as { target: BrokerTarget; stop: () => Promise<void> };
const official = {} as { target: BrokerTarget; stop: () => Promise<void> };

test.before(async () => {
  const broker = new PeerjsBroker({ logger: silentLogger() }, { ...defaultPeerjsOptions, ...settings, queue: { ...defaultPeerjsOptions.queue, perIdMessages: 32 } });
  const server = createServer((req, res) => {
    if (!broker.handleRequest(req, res)) res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket, head) => {
    if (!broker.handleUpgrade(req, socket, head)) socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
  });
  broker.start();
  const { port } = await listen(server, '127.0.0.1', 0);
  ours.target = { wsBase: `ws://127.0.0.1:${port}/`, httpBase: `http://127.0.0.1:${port}/`, key: 'peerjs', ...settings, limits: { perIdMessages: 32, maxFrameBytes: 64 * 1024 } };
  ours.stop = async () => {
    await broker.stop();
    await new Promise((r) => server.close(r));
  };
  const o = await startOfficialPeerjs({ expire_timeout: settings.expireTimeoutMs, alive_timeout: settings.aliveTimeoutMs, concurrent_limit: settings.concurrentLimit });
  official.target = { wsBase: `ws://127.0.0.1:${o.port}/`, httpBase: `http://127.0.0.1:${o.port}/`, key: 'peerjs', ...settings };
  official.stop = o.stop;
});
test.after.always(async () => {
  await ours.stop?.();
  await official.stop?.();
});

peerjsConformance(test, () => ours.target, 'ours', 'expect-pass');
peerjsConformance(test, () => official.target, 'official peer@1.0.2', 'expect-failure');
