// Signaling benchmark: delivery latency at a fixed rate, durable send->deliver->ack throughput, and
// how many idle long-polls one server process holds (RSS per poll). The server is the built CLI in
// its own process on loopback; its devices are written straight into its LevelDB store first, so
// the run does not spend minutes on logins (scrypt + CSR per device).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { systemClock } from '../../src/core/clock.js';
import { generateDeviceKey } from '../../src/crypto/x509/device-key.js';
import { RequestSigner } from '../../src/crypto/request-signature.js';
import { randomSerial } from '../../src/crypto/x509/certificate-authority.js';
import { ApiClient } from '../../src/net/api-client.js';
import { dataDirPaths, ensureDataDir, loadOrCreateCa } from '../../src/roles/server/data-dir.js';
import { LevelServerStore } from '../../src/storage/level-server-store.js';
import { tempDir } from '../../src/testing/helpers/temp-dir.js';
import { CLI } from '../../src/testing/helpers/cli.js';
import { firstJsonLine } from './child-output.js';
import { durableThroughput, fixedRate, startReceiving, stampedPayload } from './delivery.js';
import { cpuSecondsByThread } from './proc.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const RATE = env('BENCH_RATE', 2000);
const SECONDS = env('BENCH_SECONDS', 10);
const IDLE_POLLS = env('BENCH_IDLE_POLLS', 19_000);

interface Device {
  userId: string;
  deviceId: number;
  signer: RequestSigner;
}

/** The server's memory after a full GC (see gc-on-signal.cjs). */
async function serverMemory(pid: number, file: string): Promise<NodeJS.MemoryUsage> {
  process.kill(pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 1000));
  return JSON.parse(await readFile(file, 'utf8')) as NodeJS.MemoryUsage;
}

/** `perUser` devices share a user (senders and receivers: one each, so every receiver has its own queue). */
async function makeDevices(store: LevelServerStore, count: number, privateKeyPem: string, publicKeyPem: string, perUser = 127): Promise<Device[]> {
  const devices: Device[] = [];
  let userId = randomUUID();
  for (let i = 0; i < count; i++) {
    if (i % perUser === 0) userId = randomUUID();
    const serial = randomSerial();
    const d = await store.putDevice(userId, { serial, publicKeyPem, expiresAt: Date.now() + 86_400_000 }, Date.now());
    devices.push({ userId, deviceId: d.deviceId, signer: new RequestSigner({ userId, deviceId: d.deviceId, serial, privateKeyPem }) });
  }
  return devices;
}

function client(url: string, dispatcher: Agent, d: Device): ApiClient {
  return new ApiClient({ clock: systemClock, auth: d.signer }, { server: url, dispatcher });
}

export async function run(): Promise<void> {
  const dir = await tempDir('lantern-bench-');
  const data = `${dir.path}/data`;
  await ensureDataDir(data);
  await loadOrCreateCa(data);
  const key = await generateDeviceKey();
  const store = new LevelServerStore({ location: dataDirPaths(data).store, sync: false });
  await store.open();
  const receivers = await makeDevices(store, 20, key.privateKeyPem, key.publicKeyPem, 1);
  const senders = await makeDevices(store, 20, key.privateKeyPem, key.publicKeyPem, 1);
  const idle = await makeDevices(store, IDLE_POLLS, key.privateKeyPem, key.publicKeyPem);
  await store.close();

  const memFile = `${dir.path}/server-memory.json`;
  const gcPreload = fileURLToPath(new URL('./gc-on-signal.cjs', import.meta.url));
  const nodeArgs = ['--expose-gc', '--require', gcPreload, ...(process.env['BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean)];
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'server', '--listen', '127.0.0.1:0', '--data-dir', data, '--json', '--log-level', 'warn',
    '--rate-pair', '1000000000/1000000000', '--rate-recipient-bytes', '1000000000000/1000000000000', '--queue-max-messages', '1000000',
    // Thousands of idle polls from one loopback address: the connection caps are off.
    '--max-connections', '0', '--max-connections-per-address', '0', ...(process.env['BENCH_NO_FSYNC'] ? ['--no-fsync'] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BENCH_MEM_FILE: memFile },
  });
  // Anything else the server prints (a V8 trace from BENCH_SERVER_NODE_ARGS) goes to stderr.
  const url = String((await firstJsonLine(child.stdout!, (line) => process.stderr.write(`${line}\n`)))['url']);
  const dispatcher = new Agent({ connections: 128, keepAliveTimeout: 60_000 });
  console.log(`signaling benchmark: server pid ${child.pid} at ${url} (fsynced group commit)`);

  // Receivers: long-poll, record latency from the timestamp in the payload, ack each batch.
  const receiving = startReceiving(receivers.map((d) => client(url, dispatcher, d)));
  const senderApis = senders.map((d) => client(url, dispatcher, d));
  const send = (i: number) =>
    senderApis[i % senderApis.length]!.send({
      id: randomUUID(),
      to: receivers[i % receivers.length]!.userId,
      deviceId: 1,
      type: 0,
      payload: stampedPayload(),
    });

  // Warm-up (not measured): sessions opened, connections made, code paths compiled.
  await Promise.all(senderApis.map((api) => api.session()));
  for (let i = 0; i < 2000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => send(i + j)));
  while (receiving.received < 2000) await new Promise((r) => setTimeout(r, 20));

  // CPU-µs per message of the server and of this process (the senders and receivers, with their
  // signing): on two shared cores, what the one spends the other cannot.
  const cpu = () => ({ server: cpuSecondsByThread(child.pid!), bench: process.cpuUsage() });
  const cpuPerMessage = (from: ReturnType<typeof cpu>, messages: number) => {
    const used = process.cpuUsage(from.bench);
    const server = cpuSecondsByThread(child.pid!);
    const us = (s: number) => ((s * 1e6) / Math.max(1, messages)).toFixed(0);
    const main = server.main - from.server.main;
    const others = server.others - from.server.others;
    return `CPU-µs per message: server ${us(main + others)} (event loop ${us(main)}, other threads ${us(others)}), bench process (senders and receivers) ${us((used.user + used.system) / 1e6)}`;
  };

  // 1. Fixed rate: message i is sent at t0 + i/RATE.
  const fixedCpu = cpu();
  const fixed = await fixedRate(send, receiving, RATE, SECONDS);
  console.log(`  ${cpuPerMessage(fixedCpu, fixed.delivered)}`);
  console.log(`  send round trip p50 ${fixed.sendP50.toFixed(1)} ms, p99 ${fixed.sendP99.toFixed(1)} ms`);
  console.log(
    `fixed rate ${RATE} msg/s for ${SECONDS} s: delivered ${fixed.delivered}/${fixed.total}, latency send->long-poll receive p50 ${fixed.p50.toFixed(1)} ms, p99 ${fixed.p99.toFixed(1)} ms (sends issued >50 ms late: ${fixed.lateSends})`,
  );

  // 2. Durable throughput: closed loop, BENCH_SENDERS (4) senders each sending batches of 50 messages
  // (POST /v1/messages/batch); counts messages received by long-poll and acked.
  const senderCount = env('BENCH_SENDERS', 4);
  const durableCpu = cpu();
  const d = await durableThroughput(senderApis.slice(0, senderCount), receivers.map((r) => r.userId), receiving, SECONDS);
  console.log(`  ${cpuPerMessage(durableCpu, d.received)}`);
  console.log(`durable send->deliver->ack: ${d.received}/${d.sent} messages in ${d.seconds.toFixed(1)} s = ${d.perSecond.toFixed(0)} msg/s (batches of 50, ${senderCount} senders; delivery p50 ${d.deliveryP50.toFixed(0)} ms)`);
  await receiving.stop();

  // 3. Idle long-polls: one raw socket per device, each holding GET /v1/messages?wait=60, MACed
  // with the device's LA1S session as a real client does (sessions are opened first).
  const sessions: Array<{ d: Device; session: Awaited<ReturnType<ApiClient['session']>> }> = [];
  for (let i = 0; i < idle.length; i += 100) {
    await Promise.all(
      idle.slice(i, i + 100).map(async (d) => sessions.push({ d, session: await client(url, dispatcher, d).session() })),
    );
  }
  const before = await serverMemory(child.pid!, memFile);
  const { port } = new URL(url);
  const sockets: ReturnType<typeof connect>[] = [];
  let answered = 0;
  for (let i = 0; i < sessions.length; i++) {
    const { d, session } = sessions[i]!;
    const path = '/v1/messages?wait=60&limit=100';
    const auth = d.signer.authorizeWithSession(session, 'GET', path, '', Date.now());
    const s = connect({ host: '127.0.0.1', port: Number(port) });
    s.on('error', () => {});
    s.once('data', () => answered++);
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Lantern-Version: 1\r\nAuthorization: ${auth}\r\n\r\n`);
    sockets.push(s);
    if (i % 500 === 499) await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 5000));
  const after = await serverMemory(child.pid!, memFile);
  const held = sockets.length - answered;
  console.log('  memory delta per poll (KiB):', Object.fromEntries(Object.keys(after).map((k) => [k, ((after[k as keyof NodeJS.MemoryUsage] - before[k as keyof NodeJS.MemoryUsage]) / Math.max(1, held) / 1024).toFixed(2)])));
  const per = (k: 'rss' | 'heapUsed') => ((after[k] - before[k]) / Math.max(1, held) / 1024).toFixed(1);
  console.log(
    `idle long-polls: ${held} held (${answered} answered early), server RSS ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB after GC: ${per('rss')} KiB RSS, ${per('heapUsed')} KiB of JS heap per poll`,
  );
  console.log(`  (the process file-descriptor limit here is 20000 and cannot be raised, so one process holds at most ~19,900 sockets)`);
  for (const s of sockets) s.destroy();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await dispatcher.close();
  await dir.remove();
}
