import type { TestFn } from 'ava';
import { Redis } from 'ioredis';
import { until, untilPollsHeld } from '../helpers/observe.js';
import { systemClock } from '../../core/clock.js';
import { ApiClient } from '../../net/api-client.js';
import { addAgent, type TestAgent } from '../helpers/agents.js';
import { runCli, startHuman, startServer, type RunningServer } from '../helpers/cli.js';
import { RawPeer } from '../helpers/peerjs-client.js';
import { tempDir } from '../helpers/temp-dir.js';

/** The Redis the instances share: one server, or a Redis Cluster. */
export interface SharedRedis {
  /** The --store URL. */
  url: string;
  /** Every key in it (on a cluster, every master's). */
  keys(): Promise<string[]>;
  stop(): Promise<void>;
}

interface Cluster {
  store: SharedRedis;
  servers: RunningServer[];
  dir: string;
}

/** Every key of the Redis at `url` (redis://HOST:PORT), by SCAN. */
export async function scanKeys(url: string): Promise<string[]> {
  const redis = new Redis(url);
  try {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await redis.scan(cursor, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    return keys;
  } finally {
    redis.disconnect();
  }
}

/**
 * Several server processes on one shared Redis act as one server: three instances, started on
 * the Redis `start` makes (in a directory of its own under the test's), and these tests.
 */
export function multiInstanceTests(test: TestFn, start: (dir: string) => Promise<SharedRedis>): void {
  const ctx = {} as { cluster?: Cluster; remove?: () => Promise<void> };

  test.before(async () => {
    const dir = await tempDir('lantern-cluster-');
    ctx.remove = dir.remove;
    const store = await start(`${dir.path}/redis`);
    const servers: RunningServer[] = [];
    // One data dir for the CA, ticket key and canary secret every instance shares (the first makes them).
    const extra = ['--store', store.url, '--rate-pair', '5/0.001', '--rate-prekey-fetch', '1000/100', '--metrics-listen', '127.0.0.1:0'];
    servers.push(await startServer(`${dir.path}/data`, extra));
    servers.push(...(await Promise.all([startServer(`${dir.path}/data`, extra), startServer(`${dir.path}/data`, extra)])));
    ctx.cluster = { store, servers, dir: dir.path };
  });

  test.after.always(async () => {
    for (const s of ctx.cluster?.servers ?? []) await s.stop();
    await ctx.cluster?.store.stop();
    await ctx.remove?.();
  });

  /** An account made on Redis, logged in through instance `via`. */
  async function agent(c: Cluster, name: string, via: number): Promise<TestAgent> {
    const added = await runCli(['account', 'add', name, '--store', c.store.url, '--password-stdin'], { stdin: `pw-${name}-secret\n` });
    if (added.code !== 0) throw new Error(added.stderr);
    return addAgent(c.servers[via]!, c.dir, name, { existing: true });
  }

  /** The agent's device talking to another instance (its session lives in Redis, so it works there too). */
  const clientOn = (a: TestAgent, server: RunningServer) => new ApiClient({ clock: systemClock, auth: a.signer }, { server: server.url });

  test('a send on one instance wakes the long-poll another holds; a newer poll on a third releases it', async (t) => {
    const c = ctx.cluster!;
    const alice = await agent(c, 'alice', 0);
    const bob = await agent(c, 'bob', 1);
    const waiting = runCli(['inbox', '--wait', '20', '--home', bob.home, '--json']);
    await untilPollsHeld(c.servers[1]!);
    const started = Date.now();
    const sent = await runCli(['send', '--to', bob.userId, 'across instances', '--home', alice.home]);
    t.is(sent.code, 0, sent.stderr);
    const got = await waiting;
    t.like(JSON.parse(got.stdout.trim()), { text: 'across instances', from: { userId: alice.userId } });
    // The poll's own deadline is 20 s; the bound counts two CLI processes' start as well (5 s was
    // not enough on a loaded machine).
    t.true(Date.now() - started < 12_000, `woken after ${Date.now() - started} ms, not timed out`);

    // Bob's device holds a poll on instance 1; a newer poll on instance 2 ends it at once (204).
    const [b1, b2] = [clientOn(bob, c.servers[1]!), clientOn(bob, c.servers[2]!)];
    t.teardown(() => Promise.all([b1.close(), b2.close()]));
    // None held first: a poll of the inbox command still being answered would count as the older
    // one, and the newer poll could then go out before the older one is held (seen under load).
    await untilPollsHeld(c.servers[1]!, 0);
    const older = b1.poll(20);
    await untilPollsHeld(c.servers[1]!);
    const newer = b2.poll(2);
    const releasedAt = Date.now();
    t.is(await older, undefined, 'the older poll is answered with nothing');
    t.true(Date.now() - releasedAt < 1500, `released after ${Date.now() - releasedAt} ms`);
    t.is(await newer, undefined);
  });

  test('rate limits and prekey pops are shared by the instances', async (t) => {
    const c = ctx.cluster!;
    const carol = await agent(c, 'carol', 0);
    const dave = await agent(c, 'dave', 2);
    const apis = c.servers.map((s) => clientOn(carol, s));
    t.teardown(() => Promise.all(apis.map((a) => a.close())));
    // The pair limit is 5 messages, wherever they are sent.
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) =>
        apis[i % 3]!.send({ id: crypto.randomUUID(), to: dave.userId, deviceId: 1, type: 0, payload: Buffer.from(`m${i}`).toString('base64') }),
      ),
    );
    t.is(results.filter((r) => r.status === 'fulfilled').length, 5);
    t.true(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === 'LA_ERR_RATE_LIMITED'));
    // Each one-time prekey is handed out once, whichever instance is asked.
    const before = await clientOn(dave, c.servers[2]!).keyCounts();
    const bundles = await Promise.all(Array.from({ length: 9 }, (_, i) => apis[i % 3]!.bundles(dave.userId)));
    const ids = bundles.map((b) => b.devices[0]!.preKey?.keyId);
    t.is(new Set(ids).size, 9, 'no prekey served twice');
    const after = await clientOn(dave, c.servers[0]!).keyCounts();
    t.is(after.preKeys, before.preKeys - 9);
  });

  // Serial: it runs before the other tests, while no PeerJS client is connected anywhere (the
  // limit counts every id in the shared store).
  test.serial('the PeerJS concurrent-client limit and /peers discovery hold across instances', async (t) => {
    const c = ctx.cluster!;
    const extra = ['--store', c.store.url, '--peerjs-concurrent-limit', '2', '--peerjs-allow-discovery'];
    const [x, y] = await Promise.all([startServer(`${c.dir}/data`, extra), startServer(`${c.dir}/data`, extra)]);
    t.teardown(() => Promise.all([x.stop(), y.stop()]));
    const ws = (s: RunningServer, id: string) => new RawPeer(`${s.url.replace(/^http/, 'ws')}/peerjs?key=peerjs&id=${id}&token=t-${id}`);
    const peers = async (s: RunningServer) => ((await (await fetch(`${s.url}/peerjs/peers`)).json()) as string[]).sort();
    const one = ws(x, 'limit-one');
    const two = ws(y, 'limit-two');
    t.teardown(() => (one.close(), two.close()));
    await one.next((f) => f['type'] === 'OPEN');
    await two.next((f) => f['type'] === 'OPEN');
    t.deepEqual(await peers(x), ['limit-one', 'limit-two'], '/peers on one instance lists the ids connected to the other');
    t.deepEqual(await peers(y), ['limit-one', 'limit-two']);
    // One on each instance: the limit of 2 is reached for both.
    const three = ws(x, 'limit-three');
    t.teardown(() => three.close());
    t.deepEqual(await three.next(() => true), { type: 'ERROR', payload: { msg: 'Server has reached its concurrent user limit' } });
    two.close();
    await until('the id is released', async () => ((await peers(x)).length === 1 ? true : undefined), 5000);
    const four = ws(x, 'limit-four');
    t.teardown(() => four.close());
    t.deepEqual(await four.next(() => true), { type: 'OPEN' }, 'a place freed on one instance is taken on another');
    t.deepEqual(await peers(y), ['limit-four', 'limit-one']);
  });

  test('PeerJS peers on different instances signal each other; ids are unique across instances; queued signaling follows an id online elsewhere', async (t) => {
    const c = ctx.cluster!;
    const ws = (i: number, id: string, token = `t-${id}`) => new RawPeer(`${c.servers[i]!.url.replace(/^http/, 'ws')}/peerjs?key=peerjs&id=${id}&token=${token}`);
    const a = ws(0, 'cluster-a');
    const b = ws(1, 'cluster-b');
    t.teardown(() => (a.close(), b.close()));
    await a.next((f) => f['type'] === 'OPEN');
    await b.next((f) => f['type'] === 'OPEN');
    a.send({ type: 'OFFER', dst: 'cluster-b', payload: { sdp: 'offer' } });
    t.deepEqual(await b.next((f) => f['type'] === 'OFFER'), { type: 'OFFER', src: 'cluster-a', dst: 'cluster-b', payload: { sdp: 'offer' } });
    b.send({ type: 'ANSWER', dst: 'cluster-a', payload: { sdp: 'answer' } });
    t.like(await a.next((f) => f['type'] === 'ANSWER'), { src: 'cluster-b', payload: { sdp: 'answer' } });

    // The id is taken on every instance, not only where it is connected.
    const thief = ws(2, 'cluster-a', 'another-token');
    t.like(await thief.next(() => true), { type: 'ID-TAKEN' });

    // Signaling for an id that is nowhere waits on the sender's instance and follows it online on another.
    a.send({ type: 'OFFER', dst: 'cluster-late', payload: 1 });
    a.send({ type: 'CANDIDATE', dst: 'cluster-late', payload: 2 });
    await new Promise((r) => setTimeout(r, 300));
    const late = ws(2, 'cluster-late');
    t.teardown(() => late.close());
    await late.next((f) => f['payload'] === 2);
    t.deepEqual(late.frames.map((f) => [f['type'], f['src'] ?? null, f['payload'] ?? null]), [['OPEN', null, null], ['OFFER', 'cluster-a', 1], ['CANDIDATE', 'cluster-a', 2]]);

    // An id that never comes: EXPIRE to the sender, from its own instance.
    b.send({ type: 'OFFER', dst: 'cluster-nobody', payload: 3 });
    t.like(await b.next((f) => f['type'] === 'EXPIRE', 9000), { src: 'cluster-nobody', dst: 'cluster-b' });

    // When a client goes away, its id is free on every instance.
    a.close();
    await new Promise((r) => setTimeout(r, 300));
    const again = ws(2, 'cluster-a', 'another-token');
    t.teardown(() => again.close());
    t.deepEqual(await again.next(() => true), { type: 'OPEN' });
  });

  test('account revoke on Redis ends the revoked device\'s poll on whichever instance holds it', async (t) => {
    const c = ctx.cluster!;
    const erin = await agent(c, 'erin', 1);
    const api = clientOn(erin, c.servers[2]!);
    t.teardown(() => api.close());
    const held = api.poll(20);
    await untilPollsHeld(c.servers[2]!);
    const started = Date.now();
    const revoked = await runCli(['account', 'revoke', 'erin', '--store', c.store.url, '--json']);
    t.is(revoked.code, 0, revoked.stderr);
    t.is(await held, undefined, 'the held poll is answered (204)');
    // (The time includes the revoke command's own start, seconds on a loaded machine.)
    t.true(Date.now() - started < 12_000, `ended after ${Date.now() - started} ms, not at its 20 s deadline`);
    await t.throwsAsync(api.poll(0), { code: 'LA_ERR_AUTH_REVOKED' } as never);
  });

  test('no client address is written to Redis: per-address limits are keyed by a hash of the network', async (t) => {
    const c = ctx.cluster!;
    // Logins (counted per client network) have happened in this file's tests; one more to be sure.
    await agent(c, 'frank', 1);
    const keys = await c.store.keys();
    t.true(keys.some((k) => k.includes('login-net:')), 'the login limit has its buckets');
    t.deepEqual(keys.filter((k) => /127\.0\.0\.|::1|::ffff/.test(k)), [], 'no key names an address');
  });

  test("a verdict posted on one instance reaches the give peer waiting on another at once (the verdict signal is on Redis pub/sub)", async (t) => {
    const c = ctx.cluster!;
    const owner = await agent(c, 'giver', 0);
    const added = await runCli(['account', 'add', 'checker', '--store', c.store.url, '--role', 'verifier', '--password-stdin'], { stdin: 'pw-checker-secret\n' });
    t.is(added.code, 0, added.stderr);
    const checker = await addAgent(c.servers[1]!, c.dir, 'checker', { existing: true });
    // give waits on instance 0; the verifier posts its verdict to instance 1.
    const give = await startHuman(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations'], /reachable: /);
    t.teardown(() => give.stop('SIGKILL'));
    const r = await runCli(['verify', '--once', '--home', checker.home, '--timeout', '3s']);
    const posted = performance.now();
    t.regex(r.stderr, /pass [0-9a-f]{8} 127\.0\.0\.1:\d+ ok/, r.stderr);
    await until('the give peer hears of it', async () => (/verified: in the round robin/.test(give.stderr()) ? true : undefined), 5000);
    const after = performance.now() - posted;
    t.log(`the give peer on instance 0 knew ${Math.round(after)} ms after verify --once (on instance 1) ended`);
    t.true(after < 1500, `${Math.round(after)} ms (its heartbeat is 30 s away)`);
  });
}
