// The destinations of the proxy benchmark, in their own process so that neither the client nor the
// give peer pays for them: an HTTP server (/bulk: 1 GiB, /bulk/N: N MiB; anything else: "ok"), a
// TCP echo server, and a TCP sink for uploads (an 8-byte big-endian length, then that many bytes,
// answered with one byte "k" once all have come). Prints {"httpPort", "echoPort", "sinkPort"} when
// listening.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { listen } from '../../src/net/listen.js';

const CHUNK = Buffer.alloc(256 * 1024, 7);

const http = createHttpServer((req, res) => {
  const mib = req.url === '/bulk' ? 1024 : /^\/bulk\/(\d+)$/.exec(req.url ?? '')?.[1];
  if (mib !== undefined) {
    const bytes = Number(mib) * 1024 * 1024;
    res.writeHead(200, { 'content-length': bytes });
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += CHUNK.length;
        if (!res.write(CHUNK)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
  } else {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
  }
});
const echo = createTcpServer((c) => {
  c.setNoDelay(true);
  c.on('error', () => c.destroy());
  c.pipe(c);
});
const sink = createTcpServer((c) => {
  c.on('error', () => c.destroy());
  let head = Buffer.alloc(0);
  let left = -1;
  c.on('data', (chunk: Buffer) => {
    if (left < 0) {
      head = Buffer.concat([head, chunk]);
      if (head.length < 8) return;
      left = Number(head.readBigUInt64BE(0)) - (head.length - 8);
    } else left -= chunk.length;
    if (left === 0) c.write('k');
  });
});
const httpPort = (await listen(http, '127.0.0.1', 0)).port;
const echoPort = (await listen(echo, '127.0.0.1', 0)).port;
const sinkPort = (await listen(sink, '127.0.0.1', 0)).port;
console.log(JSON.stringify({ httpPort, echoPort, sinkPort }));
