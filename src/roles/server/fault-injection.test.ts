import test from 'ava';
import { FaultBoundary, type FaultSurface } from '../../core/fault-boundary.js';
import { silentLogger } from '../../core/logger.js';
import { controlRequest } from '../../net/control-socket.js';
import { dnsQuery, rcodeOf, tcpExchange, udpExchange } from '../../testing/helpers/dns-client.js';
import { startInProcessServer } from '../../testing/helpers/in-process-server.js';
import { until } from '../../testing/helpers/observe.js';
import { RawPeer } from '../../testing/helpers/peerjs-client.js';

// One fault injected on each surface of the server's listeners: the boundary there contains it
// (counted, that one connection or job dropped), and the server keeps serving everything. A fault
// that escaped a boundary would end this test process.
test('a fault on any surface (request, upgrade, WebSocket, timer, DNS UDP and TCP, control socket) drops only its own work', async (t) => {
  const armed = new Set<FaultSurface>();
  const faults = new FaultBoundary({
    logger: silentLogger(),
    inject: (surface) => {
      if (armed.delete(surface)) throw new TypeError(`injected ${surface} fault`);
    },
  });
  const srv = await startInProcessServer({ faults, peerjs: { aliveTimeoutMs: 1500 } });
  t.teardown(() => srv.stop());
  const ws = (id: string, heartbeatMs?: number) => new RawPeer(`${srv.url.replace(/^http/, 'ws')}/peerjs?key=peerjs&id=${id}&token=tok`, heartbeatMs === undefined ? {} : { heartbeatMs });
  const count = (surface: FaultSurface) => faults.counts()[surface] ?? 0;
  let n = 0;
  const serving = async (what: string) => {
    const health = await fetch(`${srv.url}/v1/health`);
    t.is(health.status, 200, `after the ${what} fault: the API answers`);
    const peer = ws(`alive-${n++}`);
    await peer.next((f) => f['type'] === 'OPEN');
    peer.close();
    const udp = await udpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test'));
    t.is(rcodeOf(udp), 'NOERROR', `after the ${what} fault: DNS answers`);
  };
  await serving('no');

  armed.add('request');
  const failed = await fetch(`${srv.url}/v1/health`);
  t.is(failed.status, 500);
  t.is(((await failed.json()) as { error: { code: string } }).error.code, 'LA_ERR_INTERNAL');
  t.is(count('request'), 1);
  await serving('request');

  armed.add('upgrade');
  const refused = ws('upgrade-fault');
  t.is(typeof (await refused.closed).code, 'number');
  t.deepEqual(refused.frames, []);
  t.is(count('upgrade'), 1);
  await serving('upgrade');

  armed.add('websocket');
  const dropped = ws('ws-fault');
  await dropped.closed;
  t.deepEqual(dropped.frames, [], 'the faulting accept gives no OPEN');
  const open = ws('ws-frame');
  await open.next((f) => f['type'] === 'OPEN');
  armed.add('websocket');
  open.send({ type: 'HEARTBEAT' });
  await open.closed;
  t.is(count('websocket'), 2, 'one fault in accept, one in a frame handler');
  await serving('websocket');

  // The broker's sweep timer faults once, and keeps sweeping: a silent peer is still closed.
  const silent = ws('silent', 0);
  await silent.next((f) => f['type'] === 'OPEN');
  armed.add('timer');
  await until('the timer fault', async () => (count('timer') === 1 ? true : undefined));
  const closed = await silent.closed;
  t.true(closed.code > 0, 'the alive timeout still closes silent clients after the faulted tick');
  await serving('timer');

  armed.add('dns-udp');
  t.is(await udpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test'), 500), undefined, 'the faulted query gets no answer');
  t.is(count('dns-udp'), 1);
  await serving('dns-udp');

  armed.add('dns-tcp');
  t.is(await tcpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test')), undefined, 'the faulted connection is closed');
  t.is(count('dns-tcp'), 1);
  const tcp = await tcpExchange(srv.dns.address.port, dnsQuery('roundrobin.lantern.test'));
  t.is(rcodeOf(tcp), 'NOERROR', 'DNS over TCP answers again');

  armed.add('control');
  const lost = await controlRequest(srv.controlPath, { op: 'account.add', name: 'zed', role: 'user', password: 'long enough password' }).catch((e: Error) => e);
  t.true(lost instanceof Error);
  t.is(count('control'), 1);
  t.is((await controlRequest(srv.controlPath, { op: 'account.add', name: 'zed', role: 'user', password: 'long enough password' }))?.['name'], 'zed');
  await serving('control');
  t.is(faults.total, 8);
});
