// The floor of the proxy benchmark: the least an HTTP CONNECT proxy written on Node does, in its own
// process as give is. It reads the request head, dials the target, answers 200 and pipes both ways:
// no ticket, no connection caps, no deadlines, no destination guard, no byte counting, Node's own
// read buffers. What give costs beyond this row is what its checks and its relay cost; what this row
// costs beyond a reference is Node's (its event loop, its streams, V8). Prints {"url"} when
// listening; SIGUSR2 runs a full GC (as in give's process, before memory is read).
import { connect, createServer, type Socket } from 'node:net';

const server = createServer((client: Socket) => {
  client.setNoDelay(true);
  client.on('error', () => client.destroy());
  let head: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = head.length ? Buffer.concat([head, chunk]) : chunk;
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    client.off('data', onData);
    client.pause();
    const target = /^CONNECT (\S+):(\d+) HTTP\/1\.[01]\r\n/.exec(head.toString('latin1', 0, end + 2));
    if (!target) return void client.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    const upstream = connect({ host: target[1]!, port: Number(target[2]), noDelay: true }, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      const rest = head.subarray(end + 4);
      if (rest.length) upstream.write(rest);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    upstream.on('error', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
  };
  client.on('data', onData);
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}` })));
process.on('SIGUSR2', () => (globalThis as { gc?: () => void }).gc?.());
process.on('SIGTERM', () => process.exit(0));
