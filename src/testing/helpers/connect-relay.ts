import { createSecureServer, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { connect, type Socket } from 'node:net';
import type { Transform } from 'node:stream';
import { PeerIdentity } from '../../crypto/peer-identity.js';
import { listen } from '../../net/listen.js';

export interface ConnectRelayOptions {
  /** Sees each CONNECT's headers first; returning false leaves the stream unanswered. */
  onConnect?(headers: IncomingHttpHeaders): boolean | void;
  /** What the relay does to the bytes coming back from the destination (one per stream). */
  transform?(): Transform;
}

/**
 * A stand-in give peer for tests: TLS with its own identity, HTTP/2 CONNECT streams relayed to
 * their destination (as the give role's transport), nothing else (HTTP/1.1 connections are closed).
 */
export async function connectRelay(t: { teardown(fn: () => unknown): void }, o: ConnectRelayOptions = {}) {
  const identity = new PeerIdentity();
  const creds = identity.tlsCredentials();
  const server = createSecureServer({ cert: creds.certificatePem, key: creds.privateKeyPem, allowHTTP1: false });
  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    if (o.onConnect?.(headers) === false) return;
    const [host, port] = String(headers[':authority']).split(':');
    const upstream = connect(Number(port), host!, () => {
      stream.respond({ ':status': 200 });
      stream.pipe(upstream);
      (o.transform ? upstream.pipe(o.transform()) : upstream).pipe(stream);
    });
    upstream.on('error', () => stream.destroy());
  });
  server.on('unknownProtocol', (socket: Socket) => socket.destroy());
  const port = (await listen(server, '127.0.0.1', 0)).port;
  t.teardown(() => server.close());
  return { port, identity, peer: { host: '127.0.0.1', port, identityKey: identity.publicKey } };
}
