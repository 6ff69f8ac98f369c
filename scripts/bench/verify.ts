// Verify benchmark: 1,000 give proxies on loopback (GiveProxy instances in a few child processes,
// each with its own identity key, registered through the API by their own devices) verified by one
// verifier (the built CLI, `verify --once`), then the time from stopping a verified peer to its
// removal from the round robin with a continuously running verifier at the default interval and
// timeout. The server is the built CLI in its own process; devices are written into its store first
// so the run does not spend minutes on logins.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent } from 'undici';
import { systemClock } from '../../src/core/clock.js';
import { RequestSigner } from '../../src/crypto/request-signature.js';
import { randomSerial } from '../../src/crypto/x509/certificate-authority.js';
import { generateDeviceKey } from '../../src/crypto/x509/device-key.js';
import { ApiClient } from '../../src/net/api-client.js';
import { dataDirPaths, ensureDataDir, loadOrCreateCa, loadOrCreateTicketIssuer } from '../../src/roles/server/data-dir.js';
import { LevelServerStore } from '../../src/storage/level-server-store.js';
import { CLI, runCli } from '../../src/testing/helpers/cli.js';
import { tempDir } from '../../src/testing/helpers/temp-dir.js';
import { TS_CHILD } from './child-output.js';

const env = (k: string, d: number) => Number(process.env[k] ?? d);
const PEERS = env('BENCH_PEERS', 1000);
const FLEETS = env('BENCH_FLEETS', 4);
const KILLS = env('BENCH_KILLS', 4);
const INTERVAL_S = env('BENCH_INTERVAL', 15);
const TIMEOUT_S = env('BENCH_TIMEOUT', 5);

interface Fleet {
  child: ChildProcess;
  proxies: Array<{ port: number; identityKey: string }>;
}

const firstLine = (child: ChildProcess) => new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve));

async function startFleet(count: number, ticketKey: string): Promise<Fleet> {
  const script = fileURLToPath(new URL('./give-fleet.ts', import.meta.url));
  const child = spawn(process.execPath, [...TS_CHILD, script], { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, TICKET_PUBLIC_KEY: ticketKey, COUNT: String(count) } });
  const { proxies } = JSON.parse(await firstLine(child)) as { proxies: Fleet['proxies'] };
  return { child, proxies };
}

/** Runs the verifier CLI to the end; its NDJSON verdicts and the wall time. */
async function verifyOnce(home: string, extra: string[]): Promise<{ seconds: number; verdicts: Array<{ ok: boolean; status: string }> }> {
  const started = performance.now();
  const run = await runCli(['verify', '--once', '--json', '--home', home, '--timeout', `${TIMEOUT_S}s`, ...extra], { timeoutMs: 300_000 });
  const seconds = (performance.now() - started) / 1000;
  if (run.code !== 0) throw new Error(`verify failed: ${run.stderr}`);
  return { seconds, verdicts: run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { ok: boolean; status: string }) };
}

const summary = (verdicts: Array<{ ok: boolean; status: string }>) => {
  const by = new Map<string, number>();
  for (const v of verdicts) by.set(v.status, (by.get(v.status) ?? 0) + 1);
  return [...by].map(([k, n]) => `${k} ${n}`).join(', ');
};

export async function run(): Promise<void> {
  const dir = await tempDir('lantern-bench-verify-');
  const data = `${dir.path}/data`;
  await ensureDataDir(data);
  await loadOrCreateCa(data);
  const ticketKey = (await loadOrCreateTicketIssuer(data)).publicKeyPem;
  const key = await generateDeviceKey();
  const store = new LevelServerStore({ location: dataDirPaths(data).store, sync: false });
  await store.open();
  const signers: RequestSigner[] = [];
  let userId = randomUUID();
  for (let i = 0; i < PEERS; i++) {
    if (i % 127 === 0) userId = randomUUID();
    const serial = randomSerial();
    const d = await store.putDevice(userId, { serial, publicKeyPem: key.publicKeyPem, expiresAt: Date.now() + 86_400_000 }, Date.now());
    signers.push(new RequestSigner({ userId, deviceId: d.deviceId, serial, privateKeyPem: key.privateKeyPem }));
  }
  await store.close();
  const added = await runCli(['account', 'add', 'verifier', '--role', 'verifier', '--data-dir', data, '--password-stdin'], { stdin: 'bench-verifier-pw\n' });
  if (added.code !== 0) throw new Error(added.stderr);

  const children: ChildProcess[] = [];
  try {
    const server = spawn(process.execPath, [CLI, 'server', '--listen', '127.0.0.1:0', '--data-dir', data, '--json', '--log-level', 'warn', '--peer-ttl', '1h', '--no-fsync'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(server);
    const url = String((JSON.parse(await firstLine(server)) as { url: string }).url);
    const home = `${dir.path}/verifier`;
    const login = await runCli(['login', '--server', url, '--user', 'verifier', '--password-stdin', '--home', home], { stdin: 'bench-verifier-pw\n' });
    if (login.code !== 0) throw new Error(login.stderr);

    const fleets: Fleet[] = [];
    for (let f = 0; f < FLEETS; f++) {
      const fleet = await startFleet(Math.floor(PEERS / FLEETS) + (f < PEERS % FLEETS ? 1 : 0), ticketKey);
      children.push(fleet.child);
      fleets.push(fleet);
    }
    const proxies = fleets.flatMap((fleet) => fleet.proxies.map((p) => ({ ...p, fleet })));
    console.log(`verify benchmark: ${proxies.length} give proxies in ${FLEETS} processes, server at ${url}`);

    // Each proxy registers through the API with its own device, as a give peer does.
    const dispatcher = new Agent({ connections: 32 });
    const apis = signers.map((auth) => new ApiClient({ clock: systemClock, auth }, { server: url, dispatcher }));
    const registeredAt = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < proxies.length; i = next++) {
          const p = proxies[i]!;
          const info = await apis[i]!.registerPeer({ port: p.port, protocols: ['connect', 'http', 'socks5'], identityKey: p.identityKey });
          p.fleet.child.stdin!.write(`${JSON.stringify({ port: p.port, peerId: info.peerId })}\n`);
        }
      }),
    );
    console.log(`  registered ${proxies.length} peers in ${((performance.now() - registeredAt) / 1000).toFixed(1)} s`);

    for (const concurrency of [8, 32]) {
      const { seconds, verdicts } = await verifyOnce(home, ['--concurrency', String(concurrency)]);
      console.log(`  verify --once --concurrency ${concurrency}: ${verdicts.length} verdicts in ${seconds.toFixed(1)} s (target < 60 s; ${summary(verdicts)})`);
    }

    // Eviction: a continuously running verifier at the default interval and timeout.
    const verifier = spawn(process.execPath, [CLI, 'verify', '--json', '--log-level', 'warn', '--home', home, '--interval', `${INTERVAL_S}s`, '--timeout', `${TIMEOUT_S}s`, '--concurrency', '32'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(verifier);
    const passStarts: number[] = [];
    let seen = 0;
    createInterface({ input: verifier.stdout! }).on('line', () => {
      if (seen++ % proxies.length === 0) passStarts.push(performance.now());
    });
    const probe = apis[0]!;
    const killed = new Set<number>();
    const times: number[] = [];
    for (let k = 0; k < KILLS; k++) {
      // Stop a verified peer at a random moment of the interval.
      await new Promise((r) => setTimeout(r, Math.random() * INTERVAL_S * 1000));
      const verified = new Set((await probe.roundRobin()).map((p) => p.port));
      const victim = proxies.find((p) => verified.has(p.port) && !killed.has(p.port));
      if (!victim) continue;
      killed.add(victim.port);
      victim.fleet.child.stdin!.write(`${JSON.stringify({ kill: victim.port })}\n`);
      const t0 = performance.now();
      const limit = t0 + 3 * (INTERVAL_S + TIMEOUT_S) * 1000;
      while (performance.now() < limit && (await probe.roundRobin()).some((p) => p.port === victim.port)) await new Promise((r) => setTimeout(r, 50));
      times.push((performance.now() - t0) / 1000);
      console.log(`  kill ${k + 1}: out of the round robin after ${times.at(-1)!.toFixed(2)} s`);
    }
    const passes = passStarts.slice(1).map((t, i) => (t - passStarts[i]!) / 1000);
    console.log(
      `  kill -> removal: max ${Math.max(...times).toFixed(2)} s, mean ${(times.reduce((a, b) => a + b, 0) / times.length).toFixed(2)} s over ${times.length} ` +
        `(target <= interval ${INTERVAL_S} s + timeout ${TIMEOUT_S} s = ${INTERVAL_S + TIMEOUT_S} s); pass starts every ${passes.map((s) => s.toFixed(1)).join(', ')} s`,
    );
    await dispatcher.close();
  } finally {
    for (const c of children.reverse()) {
      if (c.exitCode !== null) continue;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    }
    await dir.remove();
  }
}
