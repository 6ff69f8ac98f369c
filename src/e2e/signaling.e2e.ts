import { randomUUID } from 'node:crypto';
import test from 'ava';
import { untilPollsHeld } from '../testing/helpers/observe.js';
import { request } from 'undici';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, sharedServer, startServer } from '../testing/helpers/cli.js';

// Whole-binary tests: every server is the built CLI on port 0 with a LevelDB data dir.

// Every test here logs in from 127.0.0.1; the login limits have their own test in limits.e2e.ts.
const ctx = sharedServer(test, ['--rate-login-address', '1000/100', '--metrics-listen', '127.0.0.1:0']);

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('two accounts log in with anonymized ids, send, long-poll and ack through the CLI', async (t) => {
  const alice = await addAgent(ctx.server, ctx.dir, 'alice');
  const bob = await addAgent(ctx.server, ctx.dir, 'bob');
  t.regex(alice.userId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.false(alice.userId.includes('alice'));
  t.not(alice.userId, bob.userId);
  t.is(alice.deviceId, 1);

  const who = await runCli(['whoami', '--home', bob.home, '--json']);
  t.is(who.code, 0);
  const whoJson = JSON.parse(who.stdout) as Record<string, unknown>;
  t.deepEqual(Object.keys(whoJson).sort(), ['certificateExpires', 'deviceId', 'server', 'userId']);
  t.is(whoJson['userId'], bob.userId);
  t.is(whoJson['server'], ctx.server.url);

  // Bob waits first; Alice's send wakes the held poll.
  const started = Date.now();
  const waiting = runCli(['inbox', '--home', bob.home, '--wait', '20', '--json']);
  await untilPollsHeld(ctx.server);
  const sent = await runCli(['send', '--home', alice.home, '--to', bob.userId, '--raw', 'hello bob']);
  t.is(sent.code, 0, sent.stderr);
  const got = await waiting;
  t.is(got.code, 0, got.stderr);
  t.true(Date.now() - started < 15_000, 'the poll answered on the wake-up, not at the end of the wait');
  const lines = got.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 1);
  t.is(lines[0]!['text'], 'hello bob');
  t.deepEqual(lines[0]!['from'], { userId: alice.userId, deviceId: 1 });
  t.truthy(lines[0]!['id']);
  t.truthy(Date.parse(String(lines[0]!['sentAt'])));

  // Acked: nothing comes again.
  const again = await runCli(['inbox', '--home', bob.home, '--json']);
  t.is(again.code, 0);
  t.is(again.stdout, '');
});

test('unacked messages are delivered again; each is acked once by its owner only', async (t) => {
  const carol = await addAgent(ctx.server, ctx.dir, 'carol');
  const dave = await addAgent(ctx.server, ctx.dir, 'dave');
  const api = await carol.api();
  const dapi = await dave.api();
  t.teardown(() => Promise.all([api.close(), dapi.close()]));
  for (const text of ['one', 'two', 'three']) {
    await api.send({ id: randomUUID(), to: dave.userId, type: 0, payload: b64(text) });
  }
  const first = await dapi.poll(0, 2);
  t.truthy(first);
  t.deepEqual(first!.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['one', 'two']);
  t.true(first!.more);
  // Not acked: the same messages come back, in order.
  const second = await dapi.poll(0, 10);
  t.deepEqual(second!.messages.map((m) => m.id).slice(0, 2), first!.messages.map((m) => m.id));
  // Carol cannot ack Dave's messages: her ack touches her own queue only.
  t.is(await api.ack(second!.messages.map((m) => m.id)), 0);
  t.is(await dapi.ack([second!.messages[0]!.id]), 1);
  // The CLI shows the rest once and acks it.
  const inbox = await runCli(['inbox', '--home', dave.home, '--json']);
  t.deepEqual(inbox.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text), ['two', 'three']);
  t.is(await dapi.poll(0), undefined);
});

test('a retried send with the same id is stored once', async (t) => {
  const erin = await addAgent(ctx.server, ctx.dir, 'erin');
  const frank = await addAgent(ctx.server, ctx.dir, 'frank');
  const api = await erin.api();
  const fapi = await frank.api();
  t.teardown(() => Promise.all([api.close(), fapi.close()]));
  const req = { id: randomUUID(), to: frank.userId, type: 0, payload: b64('once') };
  await api.send(req);
  await api.send(req);
  const got = await fapi.poll(0);
  t.is(got!.messages.length, 1);
  await t.throwsAsync(api.send({ ...req, payload: b64('different') }), { code: 'LA_ERR_MESSAGE_ID_CONFLICT' } as never);
});

test('a second device of the same account gets its own id, queue and copy of every message', async (t) => {
  const gina = await addAgent(ctx.server, ctx.dir, 'gina');
  const gina2 = await addAgent(ctx.server, ctx.dir, 'gina', { existing: true, homeSuffix: '-laptop' });
  const hank = await addAgent(ctx.server, ctx.dir, 'hank');
  t.is(gina2.userId, gina.userId);
  t.is(gina2.deviceId, 2);
  const sent = await runCli(['send', '--home', hank.home, '--to', gina.userId, '--json', '--raw', 'to all of gina']);
  t.deepEqual((JSON.parse(sent.stdout) as { devices: number[] }).devices, [1, 2]);
  const one = await runCli(['send', '--home', hank.home, '--to', `${gina.userId}:2`, '--raw', 'laptop only']);
  t.is(one.code, 0);
  const texts = async (home: string) =>
    (await runCli(['inbox', '--home', home, '--json'])).stdout.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { text: string }).text);
  t.deepEqual(await texts(gina.home), ['to all of gina']);
  t.deepEqual(await texts(gina2.home), ['to all of gina', 'laptop only']);
  // A message to one's own user reaches the other devices, not the sender.
  const self = await runCli(['send', '--home', gina.home, '--to', gina.userId, '--json', '--raw', 'note to self']);
  t.deepEqual((JSON.parse(self.stdout) as { devices: number[] }).devices, [2]);
  // A device that does not exist is refused.
  const nobody = await runCli(['send', '--home', hank.home, '--to', `${gina.userId}:9`, '--raw', 'x']);
  t.is(nobody.code, 6);
  t.regex(nobody.stderr, /LA_ERR_RECIPIENT_NOT_FOUND/);
});

test('a replayed request is refused, and a tampered one does not verify', async (t) => {
  const ivan = await addAgent(ctx.server, ctx.dir, 'ivan');
  const signer = ivan.signer;
  const body = JSON.stringify({ id: randomUUID(), to: ivan.userId, type: 0, deviceId: 1, payload: b64('replay me') });
  const headers = { 'x-lantern-version': '1', 'content-type': 'application/json', authorization: signer.authorize('POST', '/v1/messages', body, Date.now()) };
  const first = await request(`${ctx.server.url}/v1/messages`, { method: 'POST', headers, body });
  t.is(first.statusCode, 200);
  await first.body.dump();
  const replay = await request(`${ctx.server.url}/v1/messages`, { method: 'POST', headers, body });
  t.is(replay.statusCode, 401);
  t.is(((await replay.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_REPLAYED');
  const freshHeaders = { ...headers, authorization: signer.authorize('POST', '/v1/messages', body, Date.now()) };
  const tampered = await request(`${ctx.server.url}/v1/messages`, { method: 'POST', headers: freshHeaders, body: body.replace('"type":0', '"type":1') });
  t.is(tampered.statusCode, 401);
  t.is(((await tampered.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_BAD_SIGNATURE');
  const stale = { ...headers, authorization: signer.authorize('POST', '/v1/messages', body, Date.now() - 10 * 60_000) };
  const old = await request(`${ctx.server.url}/v1/messages`, { method: 'POST', headers: stale, body });
  t.is(((await old.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_CLOCK_SKEW');
});

test('a credential from another server is refused', async (t) => {
  const other = await startServer(`${ctx.dir}/other-data`);
  t.teardown(() => other.stop());
  const judy = await addAgent(other, ctx.dir, 'judy');
  await addAgent(ctx.server, ctx.dir, 'judy', { homeSuffix: '-main' });
  // Judy's home from the other server, pointed at this one.
  const { signedClient } = await import('../cli/agent-home.js');
  const foreign = await signedClient({ ...judy.credential, server: ctx.server.url });
  t.teardown(() => foreign.close());
  await t.throwsAsync(foreign.poll(0), { code: 'LA_ERR_AUTH_UNKNOWN_CREDENTIAL' } as never);
});

test('revoked devices and accounts are refused; the server keeps running during account commands', async (t) => {
  const kate = await addAgent(ctx.server, ctx.dir, 'kate');
  const kate2 = await addAgent(ctx.server, ctx.dir, 'kate', { existing: true, homeSuffix: '-2' });
  const revokeOne = await runCli(['account', 'revoke', 'kate', '--data-dir', ctx.server.dataDir, '--device', '2', '--json']);
  t.is(revokeOne.code, 0, revokeOne.stderr);
  t.deepEqual(JSON.parse(revokeOne.stdout), { name: 'kate', revokedDevices: [2] });
  const refused = await runCli(['inbox', '--home', kate2.home]);
  t.is(refused.code, 4);
  t.regex(refused.stderr, /LA_ERR_AUTH_REVOKED/);
  t.is((await runCli(['inbox', '--home', kate.home])).code, 0, 'the other device still works');
  t.is((await runCli(['account', 'revoke', 'kate', '--data-dir', ctx.server.dataDir])).code, 0);
  t.regex((await runCli(['inbox', '--home', kate.home])).stderr, /LA_ERR_AUTH_REVOKED/);
  const relogin = await runCli(['login', '--server', ctx.server.url, '--user', 'kate', '--password-stdin', '--home', kate.home], { stdin: 'pw-kate-secret\n' });
  t.is(relogin.code, 4);
  t.regex(relogin.stderr, /LA_ERR_AUTH_REVOKED/);
  const missing = await runCli(['account', 'revoke', 'nobody', '--data-dir', ctx.server.dataDir]);
  t.is(missing.code, 6);
  t.regex(missing.stderr, /LA_ERR_ACCOUNT_NOT_FOUND/);
});

test('wrong passwords fail without saying which part was wrong; self-registration is closed here', async (t) => {
  await addAgent(ctx.server, ctx.dir, 'leo');
  const home = `${ctx.dir}/home-leo-bad`;
  const wrong = await runCli(['login', '--server', ctx.server.url, '--user', 'leo', '--password-stdin', '--home', home], { stdin: 'not-the-password\n' });
  t.is(wrong.code, 4);
  t.regex(wrong.stderr, /LA_ERR_LOGIN_FAILED/);
  const unknown = await runCli(['login', '--server', ctx.server.url, '--user', 'nobody-here', '--password-stdin', '--home', home], { stdin: 'whatever-password\n' });
  t.regex(unknown.stderr, /LA_ERR_LOGIN_FAILED/);
  const register = await runCli(['login', '--server', ctx.server.url, '--user', 'mallory', '--register', '--password-stdin', '--home', home], { stdin: 'mallory-password\n' });
  t.is(register.code, 4);
  t.regex(register.stderr, /LA_ERR_REGISTRATION_CLOSED/);
  const dup = await runCli(['account', 'add', 'leo', '--data-dir', ctx.server.dataDir, '--password-stdin'], { stdin: 'another-password\n' });
  t.is(dup.code, 6);
  t.regex(dup.stderr, /LA_ERR_ACCOUNT_EXISTS/);
});

test('malformed, oversized and wrongly typed bodies get a 4xx with a code; the server keeps serving', async (t) => {
  const mia = await addAgent(ctx.server, ctx.dir, 'mia');
  const signer = mia.signer;
  const post = async (path: string, body: string, extra: Record<string, string> = {}) => {
    const res = await request(`${ctx.server.url}${path}`, {
      method: 'POST',
      headers: { 'x-lantern-version': '1', 'content-type': 'application/json', authorization: signer.authorize('POST', path, body, Date.now()), ...extra },
      body,
    });
    const text = await res.body.text();
    return { status: res.statusCode, code: text ? (JSON.parse(text) as { error?: { code: string } }).error?.code : undefined, headers: res.headers };
  };
  t.like(await post('/v1/messages', '{not json'), { status: 400, code: 'LA_ERR_MALFORMED_JSON' });
  t.like(await post('/v1/messages', JSON.stringify({ id: randomUUID(), to: mia.userId, type: 'x', payload: b64('a') })), { status: 400, code: 'LA_ERR_INVALID_REQUEST' });
  t.like(await post('/v1/messages', JSON.stringify([1, 2])), { status: 400, code: 'LA_ERR_INVALID_REQUEST' });
  t.like(await post('/v1/messages', JSON.stringify({ id: randomUUID(), to: mia.userId, type: 0, payload: 'not base64!' })), { status: 400, code: 'LA_ERR_INVALID_REQUEST' });
  const big = Buffer.alloc(96 * 1024 + 1).toString('base64');
  t.like(await post('/v1/messages', JSON.stringify({ id: randomUUID(), to: mia.userId, type: 0, payload: big })), { status: 413, code: 'LA_ERR_PAYLOAD_TOO_LARGE' });
  const exact = Buffer.alloc(96 * 1024).toString('base64');
  t.like(await post('/v1/messages', JSON.stringify({ id: randomUUID(), to: mia.userId, deviceId: 1, type: 0, payload: exact })), { status: 200 });
  // Answered while the client is still sending: the server keeps the connection and drops the rest
  // of a body declared up to 8 MiB, rather than close with unread data, which reset the connection:
  // about half of these failed with EPIPE before the client could read the 413.
  for (let i = 0; i < 20; i++) {
    const refused = await post('/v1/messages', 'x'.repeat(2 * 1024 * 1024));
    t.like(refused, { status: 413, code: 'LA_ERR_BODY_TOO_LARGE' }, `upload ${i + 1}`);
    t.not(refused.headers['connection'], 'close', 'the connection is kept');
  }
  // A larger one closes the connection with the answer (if the client gets to read it): a kept
  // connection closed later would fail whichever request the client sent next on it.
  const larger = await post('/v1/messages', 'x'.repeat(32 * 1024 * 1024)).catch(() => undefined);
  if (larger) t.like(larger, { status: 413, headers: { connection: 'close' } });
  t.like(await post('/v1/login', '{"user": 5}'), { status: 400, code: 'LA_ERR_INVALID_REQUEST' });
  t.like(await post('/v1/messages', '{}', { 'x-lantern-version': '2' }), { status: 426, code: 'LA_ERR_VERSION_MISMATCH' });
  const unsigned = await request(`${ctx.server.url}/v1/messages?wait=0`, { headers: { 'x-lantern-version': '1' } });
  t.is(unsigned.statusCode, 401);
  t.is(((await unsigned.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_REQUIRED');
  const nowhere = await request(`${ctx.server.url}/v1/nothing`, { headers: { 'x-lantern-version': '1' } });
  t.is(nowhere.statusCode, 404);
  await nowhere.body.dump();
  // Still serving, and the valid message is there.
  const inbox = await runCli(['inbox', '--home', mia.home, '--json']);
  t.is(inbox.code, 0);
  t.is(inbox.stdout.trim().split('\n').length, 1);
});

test('a newer poll of the same device releases the older one', async (t) => {
  const nina = await addAgent(ctx.server, ctx.dir, 'nina');
  const a = await nina.api();
  const b = await nina.api();
  t.teardown(() => Promise.all([a.close(), b.close()]));
  const started = Date.now();
  const older = a.poll(30);
  await untilPollsHeld(ctx.server);
  const newer = b.poll(1);
  t.is(await older, undefined);
  t.true(Date.now() - started < 10_000, 'the older poll was answered early');
  t.is(await newer, undefined);
});

test('LA1S sessions: opened with the device key, MACed requests, replays and forgeries refused', async (t) => {
  const olga = await addAgent(ctx.server, ctx.dir, 'olga');
  const signer = olga.signer;
  const api = await olga.api();
  t.teardown(() => api.close());
  const session = await api.session();
  t.regex(session.id, /^[0-9a-f-]{36}$/);
  t.true(session.expiresAt <= olga.credential.expiresAt, 'a session never outlives the certificate');
  const path = '/v1/whoami';
  const headers = { 'x-lantern-version': '1', authorization: signer.authorizeWithSession(session, 'GET', path, '', Date.now()) };
  const ok = await request(`${ctx.server.url}${path}`, { headers });
  t.is(ok.statusCode, 200);
  t.like(await ok.body.json(), { userId: olga.userId, deviceId: olga.deviceId });
  const replay = await request(`${ctx.server.url}${path}`, { headers });
  t.is(((await replay.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_REPLAYED');
  const forged = signer.authorizeWithSession({ ...session, key: Buffer.alloc(32, 7).toString('base64') }, 'GET', path, '', Date.now());
  const bad = await request(`${ctx.server.url}${path}`, { headers: { ...headers, authorization: forged } });
  t.is(((await bad.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_BAD_SIGNATURE');
  const unknown = signer.authorizeWithSession({ ...session, id: randomUUID() }, 'GET', path, '', Date.now());
  const gone = await request(`${ctx.server.url}${path}`, { headers: { ...headers, authorization: unknown } });
  t.is(((await gone.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_SESSION_EXPIRED');
  // A session cannot open further sessions: that takes the device key.
  const offer = signer.beginSession();
  const body = JSON.stringify({ publicKey: offer.publicKey });
  const nested = await request(`${ctx.server.url}/v1/session`, {
    method: 'POST',
    headers: { 'x-lantern-version': '1', authorization: signer.authorizeWithSession(session, 'POST', '/v1/session', body, Date.now()) },
    body,
  });
  t.is(nested.statusCode, 401);
  t.is(((await nested.body.json()) as { error: { code: string } }).error.code, 'LA_ERR_AUTH_REQUIRED');
  // Revoking the device ends the session; the client's next request finds out.
  t.is((await runCli(['account', 'revoke', 'olga', '--data-dir', ctx.server.dataDir, '--device', String(olga.deviceId)])).code, 0);
  await t.throwsAsync(api.poll(0), { code: 'LA_ERR_AUTH_REVOKED' } as never);
});

test('a batch send answers each message on its own', async (t) => {
  const pia = await addAgent(ctx.server, ctx.dir, 'pia');
  const quinn = await addAgent(ctx.server, ctx.dir, 'quinn');
  const api = await pia.api();
  const qapi = await quinn.api();
  t.teardown(() => Promise.all([api.close(), qapi.close()]));
  const first = { id: randomUUID(), to: quinn.userId, type: 0, payload: b64('one') };
  const { results } = await api.sendBatch([
    first,
    { id: randomUUID(), to: quinn.userId, deviceId: 7, type: 0, payload: b64('no such device') },
    { id: randomUUID(), to: randomUUID(), type: 0, payload: b64('no such user') },
    first,
    { id: randomUUID(), to: quinn.userId, type: 0, payload: b64('two') },
  ]);
  t.deepEqual(
    results.map((r) => ('error' in r ? r.error.code : r.devices)),
    [[1], 'LA_ERR_RECIPIENT_NOT_FOUND', 'LA_ERR_RECIPIENT_NOT_FOUND', [1], [1]],
  );
  const got = await qapi.poll(0);
  t.deepEqual(got!.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['one', 'two'], 'the repeated id was stored once');
  const tooMany = Array.from({ length: 101 }, () => ({ id: randomUUID(), to: quinn.userId, type: 0, payload: b64('x') }));
  await t.throwsAsync(api.sendBatch(tooMany), { code: 'LA_ERR_INVALID_REQUEST' } as never);
});

test('every answer is complete and uncacheable: Content-Length, no chunking, Cache-Control no-store', async (t) => {
  const rita = await addAgent(ctx.server, ctx.dir, 'rita');
  const signer = rita.signer;
  const get = async (path: string) => {
    const res = await request(`${ctx.server.url}${path}`, { headers: { 'x-lantern-version': '1', authorization: signer.authorize('GET', path, '', Date.now()) } });
    await res.body.dump();
    return res;
  };
  const stdinSend = await runCli(['send', '--home', rita.home, '--to', `${rita.userId}:${rita.deviceId}`, '--stdin', '--raw'], { stdin: 'from stdin' });
  t.is(stdinSend.code, 0, stdinSend.stderr);
  for (const [path, status] of [
    ['/v1/messages?wait=1', 200],
    ['/v1/messages?wait=0', 200],
    ['/v1/messages?wait=99', 400],
  ] as const) {
    const res = await get(path);
    t.is(res.statusCode, status, path);
    t.is(res.headers['cache-control'], 'no-store', path);
    t.truthy(res.headers['content-length'], path);
    t.is(res.headers['transfer-encoding'], undefined, path);
  }
  const inbox = await runCli(['inbox', '--home', rita.home, '--json']);
  t.regex(inbox.stdout, /from stdin/);
  const empty = await get('/v1/messages?wait=1');
  t.is(empty.statusCode, 204);
  t.is(empty.headers['cache-control'], 'no-store');
});

test('a poll can carry the acks of the batch before it (one request per batch)', async (t) => {
  const sender = await addAgent(ctx.server, ctx.dir, 'piggy-sender');
  const receiver = await addAgent(ctx.server, ctx.dir, 'piggy-receiver');
  const [s, r] = [await sender.api(), await receiver.api()];
  t.teardown(() => Promise.all([s.close(), r.close()]));
  for (const text of ['one', 'two']) {
    await s.send({ id: randomUUID(), to: receiver.userId, deviceId: 1, type: 0, payload: Buffer.from(text).toString('base64') });
  }
  const first = await r.poll(0, 1);
  t.is(first?.messages.length, 1);
  const second = await r.poll(0, 10, undefined, first!.messages.map((m) => m.id));
  t.deepEqual(second?.messages.map((m) => Buffer.from(m.payload, 'base64').toString()), ['two'], 'the acked one is gone');
  t.is(await r.poll(0, 10, undefined, [...second!.messages.map((m) => m.id), 'not-a-message-id']), undefined, 'unknown ids are ignored');
  await t.throwsAsync(r.poll(0, 10, undefined, ['x'.repeat(65)]), { code: 'LA_ERR_INVALID_REQUEST' } as never);
});
