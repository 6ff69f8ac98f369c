// WebRTC data channel benchmark (issue 18): two peers in this process on loopback (node-datachannel,
// host candidates), the raw channel's bulk rate next to a tunnel's (ChannelStream with its credit
// flow control), a tunnel's round trip p50/p99, and new tunnels a second. The data-channel path of
// give behind NAT is this plus ICE; `npm run bench -- proxy` has the TCP give to compare with.
import nodeDataChannel from 'node-datachannel';
import { adoptChannel, createChannel } from '../../src/net/ice/channels.js';
import { acceptChannelTunnels, openChannelTunnel } from '../../src/net/ice/channel-tunnel.js';
import { IcePeer } from '../../src/net/ice/ice-peer.js';

const MIB = Number(process.env['BENCH_MIB'] ?? 256);
const CHUNK = 64 * 1024;
const ROUND_TRIPS = 2000;
const OPENS = 300;

const pct = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

export async function run(): Promise<void> {
  const config = { iceServers: [], bindAddress: '127.0.0.1' };
  const get = new IcePeer('get', config);
  const give = new IcePeer('give', config);
  get.accept(await give.answer(await get.offer(3000), 3000));
  await get.connected(5000);
  const total = MIB * 1024 * 1024;
  const chunk = Buffer.alloc(CHUNK, 7);

  // The raw channel: 64 KiB messages, sending while bufferedAmount is under 4 MiB.
  let rawReceived = 0;
  let rawDone: () => void = () => undefined;
  give.pc.onDataChannel((dc) =>
    adoptChannel(give.pc, dc).onMessage((m) => {
      rawReceived += (m as Buffer).length;
      if (rawReceived >= total) rawDone();
    }),
  );
  const raw = createChannel(get.pc, 'raw');
  await new Promise<void>((resolve) => raw.onOpen(resolve));
  let started = performance.now();
  await new Promise<void>((resolve) => {
    rawDone = resolve;
    let sent = 0;
    raw.setBufferedAmountLowThreshold(1 << 20);
    const pump = () => {
      while (sent < total && raw.bufferedAmount() < 4 << 20) {
        raw.sendMessageBinary(chunk);
        sent += CHUNK;
      }
    };
    raw.onBufferedAmountLow(pump);
    pump();
  });
  const rawRate = MIB / ((performance.now() - started) / 1000);

  // Tunnels: the acceptor sinks bulk tunnels and echoes the others.
  acceptChannelTunnels(give.pc, (request, stream, answer) => {
    stream.on('error', () => undefined);
    answer.accept();
    if (request.host === 'sink') stream.on('data', () => undefined).on('end', () => stream.end());
    else stream.pipe(stream);
  });
  const bulk = await openChannelTunnel(get.pc, { ticket: 'T', host: 'sink', port: 1 }, 5000);
  started = performance.now();
  await new Promise<void>((resolve, reject) => {
    bulk.on('error', reject).on('end', resolve).resume();
    let sent = 0;
    const write = () => {
      while (sent < total) {
        sent += CHUNK;
        if (!bulk.write(chunk)) return void bulk.once('drain', write);
      }
      bulk.end();
    };
    write();
  });
  const tunnelRate = MIB / ((performance.now() - started) / 1000);

  const echo = await openChannelTunnel(get.pc, { ticket: 'T', host: 'echo', port: 1 }, 5000);
  const rtts: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t0 = performance.now();
    const back = new Promise((resolve) => echo.once('data', resolve));
    echo.write(Buffer.alloc(16));
    await back;
    rtts.push(performance.now() - t0);
  }
  rtts.sort((a, b) => a - b);
  echo.end();

  started = performance.now();
  for (let i = 0; i < OPENS; i++) {
    const t = await openChannelTunnel(get.pc, { ticket: 'T', host: 'echo', port: 1 }, 5000);
    t.on('error', () => undefined).resume();
    t.end();
  }
  const opensPerSecond = OPENS / ((performance.now() - started) / 1000);

  console.log(`${MIB} MiB one way, 64 KiB writes, loopback, both peers in one process`);
  console.log('| path | bulk MiB/s | tunnel RTT p50 / p99 ms | new tunnels/s |');
  console.log('|---|---|---|---|');
  console.log(`| raw data channel (bufferedAmount only) | ${rawRate.toFixed(0)} | – | – |`);
  console.log(`| tunnel (ChannelStream, 1 MiB window) | ${tunnelRate.toFixed(0)} (${((tunnelRate / rawRate) * 100).toFixed(0)} % of raw) | ${pct(rtts, 50).toFixed(3)} / ${pct(rtts, 99).toFixed(3)} | ${opensPerSecond.toFixed(0)} |`);
  get.close();
  give.close();
  await new Promise((r) => setTimeout(r, 200));
  nodeDataChannel.cleanup();
}
