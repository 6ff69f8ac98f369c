import { randomUUID } from 'node:crypto';
import test from 'ava';
import { untilPollsHeld } from '../testing/helpers/observe.js';
import { request } from 'undici';
import { LanternError } from '../core/errors.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer, testServer } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Whole-binary tests of retention, caps, rate limits, credentials' lifetime, TLS and shutdown; each
// starts its own server (built CLI, port 0) with the limits it needs.

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('undelivered messages expire by the retention job', async (t) => {
  const { dir, server } = await testServer(t, ['--retention', '3s', '--expire-interval', '200ms']);
  const a = await addAgent(server, dir, 'a');
  const b = await addAgent(server, dir, 'b');
  const sender = await a.api();
  const receiver = await b.api();
  t.teardown(() => Promise.all([sender.close(), receiver.close()]));
  const sentAt = Date.now();
  await sender.send({ id: randomUUID(), to: b.userId, type: 0, payload: b64('short-lived') });
  await new Promise((r) => setTimeout(r, Math.max(0, sentAt + 4000 - Date.now())));
  const inbox = await runCli(['inbox', '--home', b.home, '--json']);
  t.is(inbox.code, 0);
  t.is(inbox.stdout, '', 'the message expired before anyone polled');
  await sender.send({ id: randomUUID(), to: b.userId, type: 0, payload: b64('fresh') });
  const fresh = await receiver.poll(0);
  t.deepEqual(fresh?.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['fresh'], 'the job removes only expired messages');
});

test('a full queue refuses sends with LA_ERR_QUEUE_FULL and keeps what it holds', async (t) => {
  const { dir, server } = await testServer(t, ['--queue-max-messages', '2', '--queue-sender-share', '1']);
  const a = await addAgent(server, dir, 'a');
  const b = await addAgent(server, dir, 'b');
  for (const text of ['first', 'second']) t.is((await runCli(['send', '--home', a.home, '--to', b.userId, '--raw', text])).code, 0);
  const full = await runCli(['send', '--home', a.home, '--to', b.userId, '--raw', 'third']);
  t.is(full.code, 5);
  t.regex(full.stderr, /LA_ERR_QUEUE_FULL/);
  const inbox = await runCli(['inbox', '--home', b.home, '--json']);
  t.deepEqual(inbox.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text), ['first', 'second']);
  t.is((await runCli(['send', '--home', a.home, '--to', b.userId, '--raw', 'after ack'])).code, 0, 'acks make room again');
});

test('sends beyond the per-pair rate get 429 with Retry-After', async (t) => {
  const { dir, server } = await testServer(t, ['--rate-pair', '3/0.05']);
  const a = await addAgent(server, dir, 'a');
  const b = await addAgent(server, dir, 'b');
  const c = await addAgent(server, dir, 'c');
  const api = await a.api();
  t.teardown(() => api.close());
  for (let i = 0; i < 3; i++) await api.send({ id: randomUUID(), to: b.userId, type: 0, payload: b64(`m${i}`) });
  const err = await t.throwsAsync(api.send({ id: randomUUID(), to: b.userId, type: 0, payload: b64('too many') }));
  t.true(LanternError.is(err, 'LA_ERR_RATE_LIMITED'));
  t.is((err as LanternError).details?.['status'], 429);
  t.true(Number((err as LanternError).details?.['retryAfterMs']) >= 1000, 'Retry-After is sent');
  // Another recipient has its own bucket.
  await api.send({ id: randomUUID(), to: c.userId, type: 0, payload: b64('fine') });
  const cli = await runCli(['send', '--home', a.home, '--to', b.userId, '--raw', 'cli too']);
  t.is(cli.code, 5);
  t.regex(cli.stderr, /LA_ERR_RATE_LIMITED/);
});

test('inbound bytes per recipient are rate limited', async (t) => {
  const { dir, server } = await testServer(t, ['--rate-recipient-bytes', '100000/10']);
  const a = await addAgent(server, dir, 'a');
  const b = await addAgent(server, dir, 'b');
  const api = await a.api();
  t.teardown(() => api.close());
  const chunk = Buffer.alloc(60_000).toString('base64');
  await api.send({ id: randomUUID(), to: b.userId, type: 0, payload: chunk });
  await t.throwsAsync(api.send({ id: randomUUID(), to: b.userId, type: 0, payload: chunk }), { code: 'LA_ERR_RATE_LIMITED' } as never);
});

test('login attempts are rate limited per account', async (t) => {
  const { dir, server } = await testServer(t, ['--rate-login-account', '2/0.01']);
  await addAgent(server, dir, 'a');
  const attempt = () =>
    runCli(['login', '--server', server.url, '--user', 'a', '--password-stdin', '--home', `${dir}/h2`], { stdin: 'wrong-password\n' });
  t.regex((await attempt()).stderr, /LA_ERR_LOGIN_FAILED/);
  const limited = await attempt();
  t.is(limited.code, 5);
  t.regex(limited.stderr, /LA_ERR_RATE_LIMITED/);
});

test('an expired credential is refused until the device logs in again', async (t) => {
  // Long enough for login and a first inbox on a loaded 2-core machine (12 s was not, at load 12).
  const { dir, server } = await testServer(t, ['--cert-lifetime', '40s']);
  const a = await addAgent(server, dir, 'a');
  t.is((await runCli(['inbox', '--home', a.home])).code, 0);
  await new Promise((r) => setTimeout(r, Math.max(0, a.credential.expiresAt - Date.now()) + 300));
  const expired = await runCli(['inbox', '--home', a.home]);
  t.is(expired.code, 4);
  t.regex(expired.stderr, /LA_ERR_AUTH_EXPIRED/);
  const again = await addAgent(server, dir, 'a', { existing: true });
  t.is(again.deviceId, a.deviceId, 'logging in again from the same home renews the same device');
  t.is((await runCli(['inbox', '--home', a.home])).code, 0);
});

test('open registration lets login --register create the account', async (t) => {
  const { dir, server } = await testServer(t, ['--open-registration']);
  const home = `${dir}/reg`;
  const reg = await runCli(['login', '--server', server.url, '--user', 'newbie', '--register', '--password-stdin', '--home', home, '--json'], {
    stdin: 'newbie-password\n',
  });
  t.is(reg.code, 0, reg.stderr);
  t.is((JSON.parse(reg.stdout) as { deviceId: number }).deviceId, 1);
  const second = await runCli(['login', '--server', server.url, '--user', 'newbie', '--register', '--password-stdin', '--home', `${dir}/reg2`, '--json'], {
    stdin: 'newbie-password\n',
  });
  t.is((JSON.parse(second.stdout) as { deviceId: number }).deviceId, 2, 'registering again with the password adds a device');
  const taken = await runCli(['login', '--server', server.url, '--user', 'newbie', '--register', '--password-stdin', '--home', `${dir}/reg3`], {
    stdin: 'someone-else\n',
  });
  t.regex(taken.stderr, /LA_ERR_LOGIN_FAILED/);
});

test('TLS with a self-signed certificate from the server CA, and the CA survives restarts', async (t) => {
  const dir = await tempDir('lantern-e2e-');
  t.teardown(() => dir.remove());
  const first = await startServer(`${dir.path}/data`, ['--tls-self-signed']);
  t.regex(first.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const a = await addAgent(first, dir.path, 'a');
  const b = await addAgent(first, dir.path, 'b');
  t.is((await runCli(['send', '--home', a.home, '--to', b.userId, '--raw', 'over tls'])).code, 0);
  t.is(await first.stop(), 0);
  const second = await startServer(`${dir.path}/data`, ['--tls-self-signed', '--listen', first.url.replace('https://', '')]);
  t.teardown(() => second.stop());
  const inbox = await runCli(['inbox', '--home', b.home, '--json']);
  t.is(inbox.code, 0, inbox.stderr);
  t.regex(inbox.stdout, /over tls/, 'same CA and credentials after a restart; the message was kept');
  const untrusted = await runCli(['login', '--server', second.url, '--user', 'a', '--password-stdin', '--home', `${dir.path}/x`], { stdin: 'pw-a-secret\n' });
  t.is(untrusted.code, 3, 'without --ca the self-signed certificate is not trusted');
  t.regex(untrusted.stderr, /LA_ERR_SERVER_UNREACHABLE/);
});

test('SIGTERM answers held polls, closes the store and exits 0', async (t) => {
  const dir = await tempDir('lantern-e2e-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--metrics-listen', '127.0.0.1:0']);
  const a = await addAgent(server, dir.path, 'a');
  const api = await a.api();
  t.teardown(() => api.close());
  const started = Date.now();
  const held = api.poll(50);
  await untilPollsHeld(server);
  const exit = await server.stop('SIGTERM');
  t.is(await held, undefined, 'the held poll got its 204');
  t.true(Date.now() - started < 10_000);
  t.is(exit, 0);
  t.deepEqual(server.events.map((e) => e['event']), ['metrics-listening', 'listening', 'stopping', 'stopped']);
  // The store was closed cleanly: the data dir opens again at once.
  const again = await startServer(`${dir.path}/data`);
  await again.stop();
});

test('kill -9 during a send load loses no answered message', async (t) => {
  const dir = await tempDir('lantern-e2e-');
  t.teardown(() => dir.remove());
  const data = `${dir.path}/data`;
  const server = await startServer(data, ['--rate-pair', '100000/100000']);
  const a = await addAgent(server, dir.path, 'a');
  const b = await addAgent(server, dir.path, 'b');
  const api = await a.api();
  t.teardown(() => api.close());
  const answered = new Set<string>();
  let failed = 0;
  let stop = false;
  const worker = async () => {
    for (let i = 0; i < 2000 && !stop; i++) {
      const id = randomUUID();
      try {
        await api.send({ id, to: b.userId, type: 0, payload: b64(id) });
        answered.add(id);
      } catch {
        failed++;
        return;
      }
    }
  };
  const load = Promise.all(Array.from({ length: 16 }, worker));
  while (answered.size < 300) await new Promise((r) => setTimeout(r, 20));
  server.child.kill('SIGKILL');
  await load;
  stop = true;
  t.true(failed > 0, 'some sends were cut off by the kill');
  t.log(`answered before kill -9: ${answered.size}`);
  const restarted = await startServer(data);
  t.teardown(() => restarted.stop());
  const { signedClient } = await import('../cli/agent-home.js');
  const bapi = await signedClient({ ...b.credential, server: restarted.url });
  t.teardown(() => bapi.close());
  const delivered = new Set<string>();
  for (let round = 0; round < 100; round++) {
    const batch = await bapi.poll(0, 500);
    if (!batch) break;
    for (const m of batch.messages) delivered.add(Buffer.from(m.payload, 'base64').toString());
    await bapi.ack(batch.messages.map((m) => m.id));
  }
  const lost = [...answered].filter((id) => !delivered.has(id));
  t.deepEqual(lost, [], 'every answered send is delivered after the restart');
});

test('the server refuses a data dir that another server holds', async (t) => {
  const { server } = await testServer(t);
  const second = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', server.dataDir, '--json']);
  t.is(second.code, 1);
  t.regex(second.stderr, /LA_ERR_STORE_LOCKED/);
  const res = await request(`${server.url}/v1/health`);
  t.is(res.statusCode, 200, 'the first server keeps serving');
  await res.body.dump();
});

test('account commands work on a data dir no server runs on, and the server then uses them', async (t) => {
  const dir = await tempDir('lantern-e2e-');
  t.teardown(() => dir.remove());
  const data = `${dir.path}/data`;
  const add = await runCli(['account', 'add', 'offline', '--data-dir', data, '--role', 'verifier', '--password-stdin', '--json'], { stdin: 'offline-password\n' });
  t.is(add.code, 0, add.stderr);
  t.like(JSON.parse(add.stdout), { name: 'offline', role: 'verifier' });
  const server = await startServer(data);
  const agent = await addAgent(server, dir.path, 'offline', { existing: true, password: 'offline-password' });
  const api = await agent.api();
  t.is((await api.whoami()).role, 'verifier');
  await api.close();
  t.is(await server.stop(), 0);
  const revoke = await runCli(['account', 'revoke', 'offline', '--data-dir', data, '--device', '1']);
  t.is(revoke.code, 0, revoke.stderr);
  const again = await startServer(data);
  t.teardown(() => again.stop());
  const { signedClient } = await import('../cli/agent-home.js');
  const stale = await signedClient({ ...agent.credential, server: again.url });
  t.teardown(() => stale.close());
  await t.throwsAsync(stale.poll(0), { code: 'LA_ERR_AUTH_REVOKED' } as never);
  const noPassword = await runCli(['account', 'add', 'x', '--data-dir', data]);
  t.is(noPassword.code, 2);
  t.regex(noPassword.stderr, /LA_ERR_USAGE/);
});

test('TLS from --tls-cert/--tls-key files', async (t) => {
  const dir = await tempDir('lantern-e2e-');
  t.teardown(() => dir.remove());
  const { CertificateAuthority } = await import('../crypto/x509/certificate-authority.js');
  const { writeFile } = await import('node:fs/promises');
  const ca = new CertificateAuthority(await CertificateAuthority.create('test TLS CA'));
  const tls = await ca.issueTls(['127.0.0.1', 'localhost']);
  await writeFile(`${dir.path}/cert.pem`, tls.certificatePem);
  await writeFile(`${dir.path}/key.pem`, tls.privateKeyPem);
  await writeFile(`${dir.path}/tls-ca.pem`, ca.certificatePem);
  const server = await startServer(`${dir.path}/data`, ['--tls-cert', `${dir.path}/cert.pem`, '--tls-key', `${dir.path}/key.pem`]);
  t.teardown(() => server.stop());
  t.regex(server.url, /^https:/);
  await runCli(['account', 'add', 'tls', '--data-dir', server.dataDir, '--password-stdin'], { stdin: 'tls-password\n' });
  const login = await runCli(['login', '--server', server.url, '--user', 'tls', '--password-stdin', '--home', `${dir.path}/h`, '--ca', `${dir.path}/tls-ca.pem`], {
    stdin: 'tls-password\n',
  });
  t.is(login.code, 0, login.stderr);
  t.is((await runCli(['inbox', '--home', `${dir.path}/h`])).code, 0);
  const missing = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/d2`, '--tls-cert', `${dir.path}/nope.pem`, '--tls-key', `${dir.path}/key.pem`]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /LA_ERR_TLS_CONFIG/);
  const half = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/d3`, '--tls-cert', `${dir.path}/cert.pem`]);
  t.is(half.code, 2);
  t.regex(half.stderr, /LA_ERR_USAGE/);
});
