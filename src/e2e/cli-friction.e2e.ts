import test from 'ava';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, sharedServer, startHuman } from '../testing/helpers/cli.js';
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
