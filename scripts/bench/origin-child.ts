// The destinations of the proxy benchmark, in their own process so that neither the client nor the
// give peer pays for them: an HTTP server (/bulk: 1 GiB; anything else: "ok") and a TCP echo
// server. Prints {"httpPort", "echoPort"} when listening.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { listen } from '../../src/net/listen.js';

const BULK_BYTES = 1024 * 1024 * 1024;
const CHUNK = Buffer.alloc(256 * 1024, 7);

const http = createHttpServer((req, res) => {
  if (req.url === '/bulk') {
    res.writeHead(200, { 'content-length': BULK_BYTES });
    let sent = 0;
    const pump = () => {
      while (sent < BULK_BYTES) {
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
const httpPort = (await listen(http, '127.0.0.1', 0)).port;
const echoPort = (await listen(echo, '127.0.0.1', 0)).port;
console.log(JSON.stringify({ httpPort, echoPort }));
