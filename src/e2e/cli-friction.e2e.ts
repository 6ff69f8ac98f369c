import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import test from 'ava';
import { ProxyAgent, request } from 'undici';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { CLI, runCli, sharedServer, startHuman, startRole, testServer } from '../testing/helpers/cli.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { until } from '../testing/helpers/observe.js';

// Issue 17: the friction points a new user hit just past the walkthrough, each as the user meets it.

const ctx = sharedServer(test, ['--rate-login-address', '1000/100']);

test('a message get receives is announced, kept unread, listed by `messages`, and then read; names stand for user ids', async (t) => {
  const alice = await addAgent(ctx.server, ctx.dir, 'alice1');
  const bob = await addAgent(ctx.server, ctx.dir, 'bob1');
  t.is((await runCli(['contacts', 'add', bob.userId, '--name', 'bob', '--home', alice.home])).code, 0);
  t.is((await runCli(['contacts', 'add', alice.userId, '--name', 'Alice', '--home', bob.home])).code, 0);
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', bob.home], /local proxy on/);
  t.teardown(() => get.stop('SIGKILL'));

  const sent = await runCli(['send', '--to', 'bob', 'hello from alice', '--home', alice.home]);
  t.is(sent.code, 0, sent.stderr);
  t.regex(sent.stdout, /^sent encrypted /);
  await until('the arrival line', async () => (/message from Alice:1: hello from alice/.test(get.stdout()) ? true : undefined), 10_000);
  const second = await runCli(['send', '--to', 'BOB', 'and again', '--home', alice.home]);
  t.is(second.code, 0, 'names are case-insensitive');
  await until('the second arrival', async () => (/and again/.test(get.stdout()) ? true : undefined), 10_000);
  t.is(await get.stop(), 0);

  const listed = await runCli(['messages', '--home', bob.home]);
  t.is(listed.code, 0, listed.stderr);
  t.regex(listed.stdout, /^\* \[[^\]]+\] Alice:1: hello from alice\n\* \[[^\]]+\] Alice:1: and again\n$/, 'both, unread, oldest first, by name');
  const again = await runCli(['messages', '--unread', '--home', bob.home]);
  t.is(again.stdout, '');
  t.regex(again.stderr, /no unread messages/);
  const json = await runCli(['messages', '--from', 'alice', '--json', '--home', bob.home]);
  const rows = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { text: string; read: boolean; fromName: string });
  t.deepEqual(rows.map((r) => [r.text, r.read, r.fromName]), [['hello from alice', true, 'Alice'], ['and again', true, 'Alice']]);
  const numbers = await runCli(['safety-number', 'alice', '--home', bob.home]);
  t.is(numbers.code, 0, numbers.stderr);
  t.regex(numbers.stdout, /^device 1: [\d ]+\n$/);
  t.regex((await runCli(['trust', 'Alice', '--home', bob.home])).stdout, /no changed identity to trust/);
  t.is((await runCli(['whoami', '--id', '--home', alice.home])).stdout, `${alice.userId}\n`, 'the id alone, to share');
  const ads = await runCli(['contacts', 'add', alice.userId, '--name', 'bob', '--home', bob.home]);
  t.is(ads.code, 0, 'renaming a contact is fine');
  const clash = await runCli(['contacts', 'add', bob.userId, '--name', 'BOB', '--home', bob.home]);
  t.regex(clash.stderr, /LA_ERR_USAGE: .* is already a contact named "bob"/);
  const unknown = await runCli(['send', '--to', 'carol', 'x', '--home', alice.home]);
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /LA_ERR_USAGE: "carol" is neither a user id nor a contact's name; add it with `lantern-agent contacts add USERID --name carol`/);
});

test('inbox shows what arrived while get ran (unread) before it polls', async (t) => {
  const alice = await addAgent(ctx.server, ctx.dir, 'alice2');
  const bob = await addAgent(ctx.server, ctx.dir, 'bob2');
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', bob.home], /local proxy on/);
  t.teardown(() => get.stop('SIGKILL'));
  t.is((await runCli(['send', '--to', bob.userId, 'while get ran', '--home', alice.home])).code, 0);
  await until('the arrival line', async () => (/while get ran/.test(get.stdout()) ? true : undefined), 10_000);
  await get.stop();
  const inbox = await runCli(['inbox', '--wait', '0', '--home', bob.home]);
  t.is(inbox.code, 0, inbox.stderr);
  t.regex(inbox.stdout, new RegExp(`${alice.userId}:1: while get ran`));
  const later = await runCli(['inbox', '--wait', '0s', '--home', bob.home]);
  t.is(later.stdout, '', 'shown once');
});

/** A CONNECT through an HTTP proxy: the status line and body of its answer. */
async function connectThrough(proxyUrl: string, target: string): Promise<{ statusLine: string; body: string }> {
  const u = new URL(proxyUrl);
  const socket = connect(Number(u.port), u.hostname);
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  let data = '';
  socket.setEncoding('utf8').on('data', (d: string) => (data += d));
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 10_000))]);
  socket.destroy();
  const [head = '', body = ''] = data.split('\r\n\r\n');
  return { statusLine: head.split('\r\n')[0] ?? '', body };
}

/** A SOCKS5 CONNECT (no authentication) to 127.0.0.1:port: the reply code. */
async function socksReplyCode(proxyUrl: string, port: number): Promise<number> {
  const u = new URL(proxyUrl);
  const socket = connect(Number(u.port), u.hostname);
  socket.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]));
  const chunks: Buffer[] = [];
  socket.on('data', (d: Buffer) => chunks.push(d));
  await Promise.race([once(socket, 'close'), new Promise((r) => setTimeout(r, 10_000))]);
  socket.destroy();
  return Buffer.concat(chunks)[3] ?? -1;
}

test("get's proxy says why a tunnel failed, with a status line, a body and a SOCKS5 code of its own for each cause", async (t) => {
  const site = createHttpServer((_req, res) => res.end('the site'));
  const sitePort = (await listen(site, '127.0.0.1', 0)).port;
  t.teardown(() => site.close());
  const closed = createNetServer();
  const closedPort = (await listen(closed, '127.0.0.1', 0)).port;
  await new Promise((r) => closed.close(r));
  const [bob, alice, carol] = [await addAgent(ctx.server, ctx.dir, 'bob3'), await addAgent(ctx.server, ctx.dir, 'alice3'), await addAgent(ctx.server, ctx.dir, 'carol3')];
  for (const [name, who] of [['alice', alice], ['carol', carol]] as const) t.is((await runCli(['contacts', 'add', who.userId, '--name', name, '--home', bob.home])).code, 0);
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', bob.home], /local proxy on/);
  t.teardown(() => get.stop('SIGKILL'));
  const getUrl = /local proxy on (\S+)/.exec(get.stderr())![1]!;

  // 1. Nothing verified, no ad: no peer yet.
  let r = await connectThrough(getUrl, `127.0.0.1:${sitePort}`);
  t.is(r.statusLine, 'HTTP/1.1 503 No Give Peer Yet');
  t.regex(r.body, /no give peer is known yet[\s\S]*lantern-agent verify[\s\S]*lantern-agent ads/);
  t.is(await socksReplyCode(getUrl, sitePort), 3, 'SOCKS5: network unreachable');
  const page = await request(`http://127.0.0.1:${sitePort}/`, { dispatcher: new ProxyAgent({ uri: getUrl, proxyTunnel: false }), headers: { accept: 'text/html' } });
  t.is(page.statusCode, 503);
  t.regex(await page.body.text(), /<h1>No Give Peer Yet<\/h1>/, 'a forward request gets a page');

  // 2. A contact's peer that guards private destinations (no --allow-private-destinations).
  const guarded = await startRole(['give', '--listen', '127.0.0.1:0', '--home', alice.home, '--no-register', '--advertise-to', bob.userId], 'advertised');
  t.teardown(() => guarded.stop('SIGKILL'));
  await until('the ad', async () => (/availability ad from alice:1: .*kept, in use now/.test(get.stdout()) ? true : undefined), 10_000);
  r = await connectThrough(getUrl, `127.0.0.1:${sitePort}`);
  t.is(r.statusLine, 'HTTP/1.1 403 Destination Refused By Give Peer');
  t.regex(r.body, /--allow-private-destinations/);
  t.is(await socksReplyCode(getUrl, sitePort), 2, 'SOCKS5: not allowed');

  // 3. That peer gone, another that reaches private addresses: a closed port is the destination's fault.
  await guarded.stop('SIGKILL');
  const open = await startRole(['give', '--listen', '127.0.0.1:0', '--home', carol.home, '--no-register', '--allow-private-destinations', '--advertise-to', bob.userId], 'advertised');
  t.teardown(() => open.stop('SIGKILL'));
  await until('the second ad', async () => (/availability ad from carol:1: .*kept, in use now/.test(get.stdout()) ? true : undefined), 10_000);
  r = await connectThrough(getUrl, `127.0.0.1:${closedPort}`);
  t.is(r.statusLine, 'HTTP/1.1 504 Destination Unreachable');
  t.regex(r.body, new RegExp(`could not reach 127.0.0.1:${closedPort}`));
  t.is(await socksReplyCode(getUrl, closedPort), 4, 'SOCKS5: host unreachable');
  t.regex((await connectThrough(getUrl, `127.0.0.1:${sitePort}`)).statusLine, /^HTTP\/1.1 200 /, 'and the site works');

  // 4. Both peers down.
  await open.stop('SIGKILL');
  r = await connectThrough(getUrl, `127.0.0.1:${sitePort}`);
  t.is(r.statusLine, 'HTTP/1.1 502 Give Peers Failed');
  t.regex(r.body, /every known give peer \(2\) failed/);
  t.is(await socksReplyCode(getUrl, sitePort), 1, 'SOCKS5: general failure');
});

test("get's proxy says when the server cannot be reached and no peer is known", async (t) => {
  const { dir, server } = await testServer(t);
  const dave = await addAgent(server, dir, 'dave');
  await server.stop();
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', dave.home], /local proxy on/);
  t.teardown(() => get.stop('SIGKILL'));
  const getUrl = /local proxy on (\S+)/.exec(get.stderr())![1]!;
  const r = await connectThrough(getUrl, '127.0.0.1:9');
  t.is(r.statusLine, 'HTTP/1.1 503 Lantern Server Unreachable');
  t.regex(r.body, /cannot be reached/);
  // It keeps trying, backing off, without a log line every second (the peer list: one line per outage).
  await new Promise((resolve) => setTimeout(resolve, 6000));
  const count = (re: RegExp) => get.stderr().split('\n').filter((l) => re.test(l)).length;
  t.true(count(/receiving failed; retrying/) <= 5, `${count(/receiving failed; retrying/)} retries logged in 6 s`);
  t.true(count(/round robin unavailable/) <= 1);
});

test('a peer whose guard refuses the canary (a server on a private address) fails with destination-refused, not tunnel-failed', async (t) => {
  const { dir, server } = await testServer(t);
  const verifier = await addAgent(server, dir, 'verifier', { role: 'verifier' });
  const owner = await addAgent(server, dir, 'owner');
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home], 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  const r = await runCli(['verify', '--once', '--json', '--home', verifier.home, '--timeout', '3s']);
  t.like(JSON.parse(r.stdout.trim().split('\n')[0]!) as object, { ok: false, status: 'destination-refused' });
  t.is(r.code, 1, 'verify --once exits 1 when a peer fails');
});

test('give says what the server thinks of it as it changes; status shows the verdict within a second; get says when peers come and go', async (t) => {
  const { dir, server } = await testServer(t);
  const verifier = await addAgent(server, dir, 'verifier', { role: 'verifier' });
  const [owner, guardedOwner, user] = [await addAgent(server, dir, 'owner'), await addAgent(server, dir, 'guarded'), await addAgent(server, dir, 'user')];
  const get = await startHuman(['get', '--listen', '127.0.0.1:0', '--home', user.home], /local proxy on/);
  t.teardown(() => get.stop('SIGKILL'));
  t.regex(get.stderr(), /0 give peer\(s\) known; none yet: a give peer is used once a verifier passes it/);

  const give = await startHuman(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations'], /registered as/);
  t.teardown(() => give.stop('SIGKILL'));
  t.regex(give.stderr(), /registered as 127\.0\.0\.1:\d+ \(peer [0-9a-f-]+\); a candidate until a verifier passes it/);
  const guarded = await startHuman(['give', '--listen', '127.0.0.1:0', '--home', guardedOwner.home], /registered as/);
  t.teardown(() => guarded.stop('SIGKILL'));

  const status = async (home: string) => (await runCli(['status', '--home', home])).stdout;
  t.regex(await status(owner.home), /no verdict yet/);
  const verified = await runCli(['verify', '--once', '--home', verifier.home, '--timeout', '3s']);
  const verdictAt = performance.now();
  t.is(verified.code, 1, 'one of the two failed');
  // The give peer hears of the verdict from the server at once (its heartbeat is a minute away).
  await until('give says verified', async () => (/verified: in the round robin at 127\.0\.0\.1:\d+/.test(give.stderr()) ? true : undefined), 3000);
  const heardAfter = performance.now() - verdictAt;
  t.log(`give knew of the verdict ${Math.round(heardAfter)} ms after verify --once ended`);
  t.true(heardAfter < 1000, `${Math.round(heardAfter)} ms`);
  t.regex(await status(owner.home), /last verdict .*: pass \(ok\)/, 'and status shows it');
  await until('the guarded one says why not', async () => (/not verified at 127\.0\.0\.1:\d+: destination-refused — the server is on a private address.*--allow-private-destinations/.test(guarded.stderr()) ? true : undefined), 3000);
  t.regex(await status(guardedOwner.home), /last verdict .*: FAIL \(destination-refused\) — /);

  await until('get hears of the peer', async () => (/give peer 127\.0\.0\.1:\d+ available \(1 known\)/.test(get.stderr()) ? true : undefined), 8000);
  await give.stop();
  await until('get hears it is gone', async () => (/give peer 127\.0\.0\.1:\d+ gone \(0 known; requests get 503/.test(get.stderr()) ? true : undefined), 8000);
});

test('login asks for the password on a terminal without echoing it; a short wrong password is just wrong', async (t) => {
  await requireTool('script');
  const added = await runCli(['account', 'add', 'carl', '--data-dir', ctx.server.dataDir, '--password-stdin'], { stdin: 'carl-password\n' });
  t.is(added.code, 0, added.stderr);
  const home = `${ctx.dir}/home-carl`;
  // A terminal: `script` runs login on a pseudo-terminal, as a person at a shell would.
  const child = spawn('script', ['-qec', `${process.execPath} ${CLI} login --server ${ctx.server.url} --user carl --home ${home}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await until('the prompt', async () => (/Password: /.test(out) ? true : undefined), 15_000);
  child.stdin.write('carl-password\r');
  const [code] = (await once(child, 'exit')) as [number | null];
  child.stdin.end();
  t.is(code, 0, out);
  t.regex(out, /logged in as carl: user [0-9a-f-]+, device 1/);
  t.false(out.includes('carl-password'), 'the password was not echoed');

  const notTty = await runCli(['login', '--server', ctx.server.url, '--user', 'carl', '--home', `${ctx.dir}/home-carl2`]);
  t.is(notTty.code, 2);
  t.regex(notTty.stderr, /LA_ERR_USAGE: pass the password on stdin with --password-stdin \(or run this on a terminal to be asked for it\)/);
  const short = await runCli(['login', '--server', ctx.server.url, '--user', 'carl', '--password-stdin', '--home', `${ctx.dir}/home-carl3`], { stdin: 'short\n' });
  t.is(short.code, 4);
  t.regex(short.stderr, /^error LA_ERR_LOGIN_FAILED: /, 'not a schema error about its length');
});

test('doctor checks a home end to end and says what to do about each problem', async (t) => {
  const { dir, server } = await testServer(t);
  const verifier = await addAgent(server, dir, 'verifier', { role: 'verifier' });
  const owner = await addAgent(server, dir, 'owner');
  const give = await startRole(['give', '--listen', '127.0.0.1:0', '--home', owner.home, '--allow-private-destinations'], 'registered');
  t.teardown(() => give.stop('SIGKILL'));
  t.is((await runCli(['verify', '--once', '--home', verifier.home, '--timeout', '3s'])).code, 0);
  const doctor = async (home: string) => {
    const r = await runCli(['doctor', '--home', home, '--listen', '127.0.0.1:0', '--json']);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ name: string; status: string; detail: string; hint?: string }> };
    return { code: r.code, ...out, status: Object.fromEntries(out.checks.map((c) => [c.name, c.status])) };
  };
  const good = await doctor(owner.home);
  t.is(good.code, 0, JSON.stringify(good.checks));
  t.deepEqual(good.status, { home: 'ok', credential: 'ok', server: 'ok', 'signed requests': 'ok', 'give peers': 'ok', ticket: 'ok', 'get port': 'ok', 'give reachable': 'ok', 'give address': 'ok' });
  t.regex(good.checks.find((c) => c.name === 'server')!.detail, /answers in \d+ ms, protocol v1; clock skew [+-]\d+\.\d s/);
  t.regex(good.checks.find((c) => c.name === 'give peers')!.detail, /^1 verified, 0 from contacts' ads$/);

  const human = await runCli(['doctor', '--home', owner.home, '--listen', '127.0.0.1:0']);
  t.regex(human.stdout, /^OK {4}server {10}http:\/\/127\.0\.0\.1:\d+ answers in/m);

  await give.stop();
  await server.stop();
  const down = await doctor(verifier.home);
  t.is(down.code, 1);
  t.is(down.status['server'], 'fail');
  t.regex(down.checks.find((c) => c.name === 'server')!.hint!, /whether the server runs/);
  const nowhere = await doctor(`${dir}/no-such-home`);
  t.is(nowhere.status['home'], 'fail');
  t.regex(nowhere.checks.find((c) => c.name === 'credential')!.hint!, /lantern-agent login --home/);
});
