// Cluster benchmark: delivery latency (send -> long-poll receive) at a fixed rate across two server
// instances (senders on instance A, receivers polling instance B, so every wake-up crosses Redis
// pub/sub) on one Redis, on a 3-master Redis Cluster (sharded pub/sub), and on 3 masters + 3
// replicas without and with --store-wait-replicas 1 (the cost of that setting); then the same on
// one instance with the embedded LevelDB store. Each setup: delivery p50/p99 at BENCH_RATE (2,000)
// msg/s, then durable throughput (batch senders, closed loop); a table of all setups side by side
// at the end. Devices are written straight into each store first, so the run does not spend
// minutes on logins. BENCH_REDIS_SETUPS=single,cluster,replicas,replicated picks the Redis setups.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { Agent } from 'undici';
import { systemClock } from '../../src/core/clock.js';
import { RequestSigner } from '../../src/crypto/request-signature.js';
import { randomSerial } from '../../src/crypto/x509/certificate-authority.js';
import { generateDeviceKey } from '../../src/crypto/x509/device-key.js';
import { ApiClient } from '../../src/net/api-client.js';
import { dataDirPaths, ensureDataDir, loadOrCreateCa } from '../../src/roles/server/data-dir.js';
import { LevelServerStore } from '../../src/storage/level-server-store.js';
import { RedisServerStore } from '../../src/storage/redis-server-store.js';
import type { ServerStore } from '../../src/storage/server-store.js';
import { CLI } from '../../src/testing/helpers/cli.js';
import { startRedis, startRedisCluster } from '../../src/testing/helpers/redis.js';
import { tempDir } from '../../src/testing/helpers/temp-dir.js';
import { durableThroughput, fixedRate, stampedPayload, startReceiving, type DurableResult, type FixedRateResult } from './delivery.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const RATE = env('BENCH_RATE', 2000);
const SECONDS = env('BENCH_SECONDS', 10);
const PAIRS = 20;
const DURABLE_SENDERS = env('BENCH_SENDERS', 4);

interface Device {
  userId: string;
  signer: RequestSigner;
}

async function makeDevices(store: ServerStore, count: number): Promise<Device[]> {
  const key = await generateDeviceKey();
  const out: Device[] = [];
  for (let i = 0; i < count; i++) {
    const userId = randomUUID();
    const serial = randomSerial();
    const d = await store.putDevice(userId, { serial, publicKeyPem: key.publicKeyPem, expiresAt: Date.now() + 86_400_000 }, Date.now());
    out.push({ userId, signer: new RequestSigner({ userId, deviceId: d.deviceId, serial, privateKeyPem: key.privateKeyPem }) });
  }
  return out;
}

async function startInstance(data: string, extra: string[]): Promise<{ url: string; child: ChildProcess }> {
  const nodeArgs = (process.env['BENCH_SERVER_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'server', '--listen', '127.0.0.1:0', '--data-dir', data, '--json', '--log-level', 'warn', '--max-connections-per-address', '0', '--rate-pair', '1000000000/1000000000', '--rate-recipient-bytes', '1000000000000/1000000000000', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', (l) => resolve(String((JSON.parse(l) as { url: string }).url))));
  return { url, child };
}

interface Row {
  label: string;
  fixed: FixedRateResult;
  durable: DurableResult;
}

/** Fixed-rate delivery latency, then durable throughput (BENCH_SENDERS batch senders, 4 by default). */
async function measure(label: string, senderUrl: string, receiverUrl: string, senders: Device[], receivers: Device[]): Promise<Row> {
  const dispatcher = new Agent({ connections: 128, keepAliveTimeout: 60_000 });
  const api = (url: string, d: Device) => new ApiClient({ clock: systemClock, auth: d.signer }, { server: url, dispatcher });
  const senderApis = senders.map((d) => api(senderUrl, d));
  const receiving = startReceiving(receivers.map((d) => api(receiverUrl, d)));
  const send = (i: number) => senderApis[i % senderApis.length]!.send({ id: randomUUID(), to: receivers[i % receivers.length]!.userId, deviceId: 1, type: 0, payload: stampedPayload() });
  // Warm-up (not measured).
  await Promise.all(senderApis.map((a) => a.session()));
  for (let i = 0; i < 2000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => send(i + j)));
  while (receiving.received < 2000) await new Promise((r) => setTimeout(r, 20));
  const fixed = await fixedRate(send, receiving, RATE, SECONDS);
  console.log(
    `  ${label}: ${RATE} msg/s for ${SECONDS} s, delivered ${fixed.delivered}/${fixed.total}; send->receive p50 ${fixed.p50.toFixed(1)} ms, p99 ${fixed.p99.toFixed(1)} ms ` +
      `(targets across instances: p50 <= 5 ms, p99 <= 30 ms); send round trip p50 ${fixed.sendP50.toFixed(1)} ms; sends issued >50 ms late: ${fixed.lateSends}`,
  );
  const durable = await durableThroughput(senderApis.slice(0, DURABLE_SENDERS), receivers.map((r) => r.userId), receiving, SECONDS);
  console.log(`    durable send->deliver->ack: ${durable.received}/${durable.sent} in ${durable.seconds.toFixed(1)} s = ${durable.perSecond.toFixed(0)} msg/s (batches of 50, ${DURABLE_SENDERS} senders; delivery p50 ${durable.deliveryP50.toFixed(0)} ms)`);
  await receiving.stop();
  await dispatcher.close();
  return { label, fixed, durable };
}

const SETUPS = (process.env['BENCH_REDIS_SETUPS'] ?? 'single,cluster,replicas,replicated').split(',');

export async function run(): Promise<void> {
  const dir = await tempDir('lantern-bench-cluster-');
  const children: ChildProcess[] = [];
  const stops: Array<() => Promise<void>> = [];
  try {
    console.log(`cluster benchmark: ${PAIRS} senders -> ${PAIRS} receivers, one signed request per send`);
    const rows: Row[] = [];
    const shared = `${dir.path}/shared`;
    await ensureDataDir(shared);
    await loadOrCreateCa(shared);
    for (const setup of SETUPS) {
      const where = `${dir.path}/${setup}`;
      const redis =
        setup === 'single'
          ? await startRedis(where)
          : await startRedisCluster(where, { masters: 3, replicasPerMaster: setup === 'replicated' || setup === 'replicas' ? 1 : 0 });
      stops.push(() => redis.stop());
      const label =
        setup === 'single'
          ? 'one Redis'
          : setup === 'cluster'
            ? 'Redis Cluster, 3 masters'
            : setup === 'replicas'
              ? 'Redis Cluster, 3 masters + 3 replicas'
              : 'Redis Cluster, 3 masters + 3 replicas, --store-wait-replicas 1';
      const extra = ['--store', redis.url, ...(setup === 'replicated' ? ['--store-wait-replicas', '1'] : [])];
      // Two instances on the setup: senders talk to A, receivers long-poll B.
      const store = new RedisServerStore({ url: redis.url });
      await store.open();
      const [senders, receivers] = [await makeDevices(store, PAIRS), await makeDevices(store, PAIRS)];
      await store.close();
      const a = await startInstance(shared, extra);
      const b = await startInstance(shared, extra);
      children.push(a.child, b.child);
      rows.push(await measure(`two instances, ${label} (send on A, receive on B)`, a.url, b.url, senders, receivers));
      for (const c of children.splice(0)) c.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 500));
      await stops.pop()!();
    }

    // One instance on the embedded LevelDB store, for comparison.
    const data = `${dir.path}/level`;
    await ensureDataDir(data);
    await loadOrCreateCa(data);
    const level = new LevelServerStore({ location: dataDirPaths(data).store, sync: false });
    await level.open();
    const [ls, lr] = [await makeDevices(level, PAIRS), await makeDevices(level, PAIRS)];
    await level.close();
    const one = await startInstance(data, []);
    children.push(one.child);
    rows.push(await measure('one instance, embedded LevelDB (fsynced)', one.url, one.url, ls, lr));
    console.log(`\n| setup | delivery at ${RATE} msg/s: p50 / p99 | durable send->deliver->ack |\n|---|---|---|`);
    for (const r of rows) console.log(`| ${r.label} | ${r.fixed.p50.toFixed(1)} / ${r.fixed.p99.toFixed(1)} ms | ${r.durable.perSecond.toFixed(0)} msg/s |`);
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (const stop of stops) await stop();
    await dir.remove();
  }
}
