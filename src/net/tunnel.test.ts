import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import { listen } from './listen.js';
import { PeerTunnels } from './tunnel.js';

test('closing the tunnels while a connection to a peer is still being made leaves no unhandled rejection', async (t) => {
  // A "peer" that accepts, says nothing, and hangs up a moment later: the TLS handshake fails
  // after close() has been called.
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    setTimeout(() => s.destroy(), 100);
  });
  const { port } = await listen(server, '127.0.0.1', 0);
  t.teardown(() => server.close());
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));

  const tunnels = new PeerTunnels();
  const opening = tunnels.open({ host: '127.0.0.1', port, identityKey: 'x' }, 'ticket', { host: '127.0.0.1', port: 9 }, 2000);
  await once(server, 'connection');
  tunnels.close();
  await t.throwsAsync(opening, { code: 'LA_ERR_DESTINATION_UNREACHABLE' });
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(unhandled, []);
});
