import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import * as dnsPacket from 'dns-packet';

/** A raw DNS query for `name`/`type`, id 4242, recursion desired. */
export function dnsQuery(name: string, type = 'A', id = 4242): Buffer {
  return dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: type as 'A', class: 'IN' }] });
}

/** Sends `message` over UDP to 127.0.0.1:port; the answer, or undefined after `timeoutMs`. */
export function udpExchange(port: number, message: Buffer, timeoutMs = 1000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket('udp4');
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.close();
      resolve(answer);
    };
    socket.once('message', (answer) => done(answer));
    socket.on('error', () => done(undefined));
    socket.send(message, port, '127.0.0.1');
  });
}

/** Sends `message` over TCP (length-prefixed); the first answer, or undefined when the connection ends first or after `timeoutMs`. */
export function tcpExchange(port: number, message: Buffer, timeoutMs = 1000): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => done(undefined), timeoutMs);
    const done = (answer: Buffer | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    socket.on('connect', () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(message.length);
      socket.write(Buffer.concat([length, message]));
    });
    socket.on('data', (chunk: Buffer) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) done(got.subarray(2, 2 + got.readUInt16BE(0)));
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(undefined));
  });
}

/** The response code name of a raw answer (undefined for no answer). */
export function rcodeOf(answer: Buffer | undefined): string | undefined {
  return answer && (dnsPacket.decode(answer) as unknown as { rcode: string }).rcode;
}
