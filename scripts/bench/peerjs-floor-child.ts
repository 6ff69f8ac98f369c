// The floor of the PeerJS benchmark: the least a WebSocket relay written on Node does for the
// benchmark's messages, in its own process as the brokers are. No `ws`, no JSON parse, no checks: an
// upgrade answered by hand, each client's frames unmasked as they come, the `dst` found by a string
// search, the sender's id put in after the first member, and the frame written to the destination's
// socket in one write. Enough of the PeerJS server protocol for the benchmark (OPEN on connect,
// frames relayed by `dst`), nothing else. Prints {"port"} when listening.
import { createHash } from 'node:crypto';
import { createServer, type Socket } from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const clients = new Map<string, Socket>();

function frame(text: string): Buffer {
  const length = Buffer.byteLength(text);
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(header + length);
  out[0] = 0x81;
  if (header === 2) out[1] = length;
  else if (header === 4) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(length), 2);
  }
  out.write(text, header, 'utf8');
  return out;
}

function relay(from: string, text: string): void {
  const at = text.indexOf('"dst":"');
  if (at < 0) return;
  const dst = text.slice(at + 7, text.indexOf('"', at + 7));
  const comma = text.indexOf(',');
  clients.get(dst)?.write(frame(`${text.slice(0, comma + 1)}"src":"${from}",${text.slice(comma + 1)}`));
}

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.on('error', () => socket.destroy());
  let id: string | undefined;
  let buffered: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    if (id === undefined) {
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffered.toString('latin1', 0, end);
      buffered = buffered.subarray(end + 4);
      id = /[?&]id=([^& ]+)/.exec(head)?.[1] ?? '';
      const key = /\r\nsec-websocket-key: *(\S+)/i.exec(head)?.[1] ?? '';
      const accept = createHash('sha1').update(key + GUID).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.write(frame('{"type":"OPEN"}'));
      clients.set(id, socket);
      socket.once('close', () => clients.get(id!) === socket && clients.delete(id!));
    }
    while (buffered.length >= 2) {
      const opcode = buffered[0]! & 0x0f;
      let length = buffered[1]! & 0x7f;
      let at = 2;
      if (length === 126) {
        if (buffered.length < 4) return;
        length = buffered.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (buffered.length < 10) return;
        length = Number(buffered.readBigUInt64BE(2));
        at = 10;
      }
      if (buffered.length < at + 4 + length) return;
      const mask = buffered.subarray(at, at + 4);
      const payload = buffered.subarray(at + 4, at + 4 + length);
      for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i & 3]!;
      buffered = buffered.subarray(at + 4 + length);
      if (opcode === 0x8) return void socket.destroy();
      if (opcode === 0x1) relay(id, payload.toString('utf8'));
    }
  });
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as { port: number }).port })));
process.on('SIGTERM', () => process.exit(0));
