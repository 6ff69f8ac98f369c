import test from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MappingRefused, pcpMap } from './pcp.js';
import { igdMap, igdServiceFrom, igdUnmap, UpnpError } from './upnp-igd.js';
import { defaultGateway } from './index.js';

/** A router's PCP/NAT-PMP port on loopback, answering by `answer` (undefined: silence). */
async function fakeRouter(answer: (msg: Buffer) => Buffer | Buffer[] | undefined): Promise<{ port: number; received: Buffer[]; socket: Socket }> {
  const socket = createSocket('udp4');
  const received: Buffer[] = [];
  socket.on('message', (msg, rinfo) => {
    received.push(msg);
    for (const reply of [answer(msg) ?? []].flat()) socket.send(reply, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return { port: (socket.address() as AddressInfo).port, received, socket };
}

/** A PCP MAP answer echoing the request's nonce, granting `externalPort` on 11.0.0.2. */
function pcpAnswer(request: Buffer, result: number, externalPort: number): Buffer {
  const out = Buffer.alloc(60);
  out.writeUInt8(2, 0);
  out.writeUInt8(0x81, 1);
  out.writeUInt8(result, 3);
  out.writeUInt32BE(request.readUInt32BE(4), 4);
  request.copy(out, 24, 24, 40); // nonce, protocol, reserved
  out.writeUInt16BE(request.readUInt16BE(40), 40);
  out.writeUInt16BE(externalPort, 42);
  out.writeUInt16BE(0xffff, 54);
  Buffer.from([11, 0, 0, 2]).copy(out, 56);
  return out;
}

const mapArgs = { gateway: '127.0.0.1', clientAddress: '127.0.0.1', internalPort: 4100, externalPort: 4100, lifetimeSeconds: 600 };

test('PCP: a MAP request carries the client address and nonce, and the granted port is the answer', async (t) => {
  const router = await fakeRouter((msg) => pcpAnswer(msg, 0, 40100));
  t.teardown(() => router.socket.close());
  const granted = await pcpMap({ ...mapArgs, port: router.port });
  t.like(granted, { protocol: 'pcp', externalHost: '11.0.0.2', externalPort: 40100, lifetimeSeconds: 600 });
  const request = router.received[0]!;
  t.is(request.length, 60);
  t.is(request.readUInt8(0), 2);
  t.deepEqual([...request.subarray(20, 24)], [127, 0, 0, 1]);
  t.true(request.subarray(24, 36).equals(granted!.nonce));
});

test('PCP: an answer with another nonce is ignored, a refusal is an error with its name', async (t) => {
  const router = await fakeRouter((msg) => {
    const forged = pcpAnswer(msg, 0, 1);
    forged.writeUInt8(forged.readUInt8(24) ^ 0xff, 24);
    return [forged, pcpAnswer(msg, 2, 0)];
  });
  t.teardown(() => router.socket.close());
  const err = await t.throwsAsync(pcpMap({ ...mapArgs, port: router.port }), { instanceOf: MappingRefused });
  t.like(err, { protocol: 'pcp', code: 2, reason: 'NOT_AUTHORIZED' });
});

test('NAT-PMP: a router that speaks only version 0 gets NAT-PMP requests', async (t) => {
  const router = await fakeRouter((msg) => {
    if (msg.readUInt8(0) === 2) return Buffer.from([0, 0x81, 0, 1, 0, 0, 0, 0]); // unsupported version
    if (msg.readUInt8(1) === 0) return Buffer.from([0, 128, 0, 0, 0, 0, 0, 9, 11, 0, 0, 3]);
    const out = Buffer.alloc(16);
    out.writeUInt8(130, 1);
    out.writeUInt16BE(msg.readUInt16BE(4), 8);
    out.writeUInt16BE(50000, 10);
    out.writeUInt32BE(msg.readUInt32BE(8), 12);
    return out;
  });
  t.teardown(() => router.socket.close());
  const granted = await pcpMap({ ...mapArgs, port: router.port });
  t.like(granted, { protocol: 'nat-pmp', externalHost: '11.0.0.3', externalPort: 50000, lifetimeSeconds: 600 });
  t.deepEqual(router.received.map((m) => m.length), [60, 2, 12]);
});

test('PCP: a silent router is retried three times, then there is no mapping', async (t) => {
  const router = await fakeRouter(() => undefined);
  t.teardown(() => router.socket.close());
  const started = Date.now();
  t.is(await pcpMap({ ...mapArgs, port: router.port }), undefined);
  t.is(router.received.length, 3);
  t.true(Date.now() - started >= 1700);
});

const DESCRIPTION_V1 = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/l3f</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device>
<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service>
<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>/ctl/IPConn</controlURL></service>
</serviceList></device></deviceList></device></deviceList></device></root>`;

test('UPnP: the WANIPConnection service is found in nested devices of an IGD v1 description', (t) => {
  const service = igdServiceFrom('http://192.168.1.1:5000/rootDesc.xml', DESCRIPTION_V1);
  t.deepEqual(service, { location: 'http://192.168.1.1:5000/rootDesc.xml', serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', controlUrl: 'http://192.168.1.1:5000/ctl/IPConn' });
  t.is(igdServiceFrom('http://x/', '<root><device></device></root>'), undefined);
});

test('UPnP v1: a taken port (718) moves to another; faults carry their code; unmap names the external port', async (t) => {
  const calls: Array<{ action: string; port: string }> = [];
  const server = createServer(async (req: IncomingMessage, res) => {
    let body = '';
    for await (const chunk of req) body += String(chunk);
    const action = /#(\w+)"/.exec(String(req.headers['soapaction']))![1]!;
    const port = /<NewExternalPort>(\d+)</.exec(body)?.[1] ?? '';
    calls.push({ action, port });
    if (action === 'AddPortMapping' && (port === '4100' || req.url === '/always718')) {
      res.writeHead(500, { 'content-type': 'text/xml' });
      return res.end(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`);
    }
    res.writeHead(200, { 'content-type': 'text/xml' });
    res.end(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action}Response xmlns:u="x"></u:${action}Response></s:Body></s:Envelope>`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const service = { location: `${base}/rootDesc.xml`, serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', controlUrl: `${base}/ctl` };
  const granted = await igdMap(service, { internalHost: '192.168.1.2', internalPort: 4100, externalPort: 4100, leaseSeconds: 600, description: 'lantern-agent give' });
  t.not(granted.externalPort, 4100);
  t.deepEqual(calls.map((c) => c.action), ['AddPortMapping', 'AddPortMapping']);
  await igdUnmap(service, granted.externalPort);
  t.deepEqual(calls.at(-1), { action: 'DeletePortMapping', port: String(granted.externalPort) });
  calls.length = 0;
  const err = await t.throwsAsync(igdMap({ ...service, controlUrl: `${base}/always718` }, { internalHost: '192.168.1.2', internalPort: 4100, externalPort: 4100, leaseSeconds: 600, description: 'x' }), { instanceOf: UpnpError });
  t.is(calls.length, 4);
  t.is(err?.code, 718);
});

test('the default gateway is read from the kernel routing table', async (t) => {
  const table = join(tmpdir(), `route-${process.pid}`);
  await writeFile(table, 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n' + 'eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n' + 'eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n');
  t.is(await defaultGateway(table), '192.168.1.1');
  t.is(await defaultGateway('/nonexistent'), undefined);
});
