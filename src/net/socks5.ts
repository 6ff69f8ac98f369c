import { once } from 'node:events';
import type { Socket } from 'node:net';

/** SOCKS5 (RFC 1928/1929) constants and the parts of the handshake shared by give and get. */
export const SOCKS = { version: 5, noAuth: 0, userPass: 2, noAcceptable: 0xff, connect: 1, ipv4: 1, domain: 3, ipv6: 4 } as const;
export const SOCKS_REPLY = { ok: 0, failure: 1, notAllowed: 2, hostUnreachable: 4, refused: 5, commandNotSupported: 7, addressNotSupported: 8 } as const;

export function socksReply(code: number): Buffer {
  return Buffer.from([SOCKS.version, code, 0, SOCKS.ipv4, 0, 0, 0, 0, 0, 0]);
}

/** Reads exactly n bytes from a paused socket (handshakes), within 10 s. */
export async function readExact(socket: Socket, n: number): Promise<Buffer> {
  if (n === 0) return Buffer.alloc(0);
  const deadline = Date.now() + 10_000;
  for (;;) {
    const chunk = socket.read(n) as Buffer | null;
    if (chunk) return chunk;
    if (socket.readableEnded || socket.destroyed || Date.now() > deadline) throw new Error('short read');
    await Promise.race([once(socket, 'readable'), once(socket, 'close'), new Promise((r) => setTimeout(r, 1000))]);
  }
}

/** Reads the greeting: the methods the client offers. */
export async function readGreeting(socket: Socket): Promise<{ version: number; methods: Buffer }> {
  const [version, count] = await readExact(socket, 2);
  return { version: version!, methods: await readExact(socket, count!) };
}

/**
 * Reads the request after the method negotiation. Returns the CONNECT target, or the reply code
 * to end the connection with (unsupported command or address type).
 */
export async function readRequest(socket: Socket): Promise<{ host: string; port: number } | { refuse: number }> {
  const [, cmd, , atyp] = await readExact(socket, 4);
  let host: string;
  if (atyp === SOCKS.ipv4) host = [...(await readExact(socket, 4))].join('.');
  else if (atyp === SOCKS.domain) host = (await readExact(socket, (await readExact(socket, 1))[0]!)).toString('utf8');
  else if (atyp === SOCKS.ipv6) host = (await readExact(socket, 16)).toString('hex').replace(/(.{4})(?!$)/g, '$1:');
  else return { refuse: SOCKS_REPLY.addressNotSupported };
  const port = (await readExact(socket, 2)).readUInt16BE(0);
  if (cmd !== SOCKS.connect) return { refuse: SOCKS_REPLY.commandNotSupported };
  return { host, port };
}

/**
 * Tells SOCKS5 from HTTP on a port that serves both: a SOCKS5 greeting starts with byte 5, an HTTP
 * request with a method name. The byte is put back before the connection is handed on.
 */
export function sniffProtocol(socket: Socket, handlers: { socks(socket: Socket): void; http(socket: Socket): void }): void {
  socket.once('readable', () => {
    const first = socket.read(1) as Buffer | null;
    if (!first) return;
    socket.unshift(first);
    if (first[0] === SOCKS.version) handlers.socks(socket);
    else handlers.http(socket);
  });
}
