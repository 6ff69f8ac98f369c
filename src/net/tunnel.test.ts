import { once } from 'node:events';
import { createSecureServer } from 'node:http2';
import { createServer, type Socket } from 'node:net';
import test from 'ava';
import { PeerIdentity } from '../crypto/peer-identity.js';
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

test("a batch of writes ending in an empty one reaches the peer intact over an HTTP/2 tunnel (Node 20's Http2Stream freed the batch early)", async (t) => {
  const identity = new PeerIdentity();
  const credentials = identity.tlsCredentials();
  const received: Buffer[] = [];
  const peer = createSecureServer({ cert: credentials.certificatePem, key: credentials.privateKeyPem, ALPNProtocols: ['h2'] });
  peer.on('stream', (stream) => {
    stream.respond({ ':status': 200 });
    stream.on('data', (d: Buffer) => received.push(d));
  });
  const { port } = await listen(peer, '127.0.0.1', 0);
  t.teardown(() => peer.close());
  const tunnels = new PeerTunnels();
  t.teardown(() => tunnels.close());
  const tunnel = await tunnels.open({ host: '127.0.0.1', port, identityKey: identity.publicKey }, 'ticket', { host: '127.0.0.1', port: 9 });
  const head = 'POST /form HTTP/1.1\r\nHost: example\r\nContent-Length: 11\r\n\r\nhello ';
  // What Node's HTTP client does for a request with a Content-Length: head and body corked, then end() writes ''.
  tunnel.cork();
  tunnel.write(head);
  tunnel.write(Buffer.from('world'));
  tunnel.write('', 'latin1');
  tunnel.uncork();
  const deadline = Date.now() + 5000;
  while (Buffer.concat(received).length < head.length + 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.is(Buffer.concat(received).toString('latin1'), `${head}world`);
});
