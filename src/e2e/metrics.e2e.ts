import { writeFile } from 'node:fs/promises';
import test from 'ava';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { RawPeer } from '../testing/helpers/peerjs-client.js';
import { scrape as read, until } from '../testing/helpers/observe.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// GET /metrics on its own listener, as an operator's Prometheus scrapes it, and the JSON logs.


test('metrics follow messages, long-polls, rate limits and the PeerJS broker; logs scrub addresses', async (t) => {
  const dir = await tempDir('lantern-metrics-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--metrics-listen', '127.0.0.1:0', '--rate-pair', '2/0.001', '--log-level', 'info']);
  t.teardown(() => server.stop());
  const url = String(server.events.find((e) => e['event'] === 'metrics-listening')?.['url']);
  t.regex(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
  const alice = await addAgent(server, dir.path, 'alice');
  const bob = await addAgent(server, dir.path, 'bob');

  t.is((await read(url))('lantern_queued_messages'), 0);
  const sent = await runCli(['send', '--to', bob.userId, 'one', '--home', alice.home]);
  t.is(sent.code, 0, sent.stderr);
  let m = await read(url);
  t.is(m('lantern_messages_accepted_total'), 1);
  t.is(m('lantern_queued_messages'), 1);

  // A held long-poll shows, then a send answers it.
  const inbox = await runCli(['inbox', '--wait', '1', '--home', bob.home, '--json']);
  t.regex(inbox.stdout, /"text":"one"/);
  const waiting = runCli(['inbox', '--wait', '30', '--home', bob.home, '--json']);
  await until('a held poll', async () => ((await read(url))('lantern_long_polls_held') === 1 ? true : undefined)).catch(async (err: unknown) => {
    t.log(await waiting);
    throw err;
  });
  await runCli(['send', '--to', bob.userId, 'two', '--home', alice.home]);
  t.regex((await waiting).stdout, /"text":"two"/);
  m = await read(url);
  t.is(m('lantern_messages_delivered_total'), 2);
  t.is(m('lantern_messages_acked_total'), 2);
  t.is(m('lantern_queued_messages'), 0);
  t.is(m('lantern_long_polls_held'), 0);

  // The pair limit is 2 messages: the third is refused.
  const third = await runCli(['send', '--to', bob.userId, 'three', '--home', alice.home]);
  t.is(third.code, 5);
  m = await read(url);
  t.is(m('lantern_rate_limit_hits_total'), 1);
  t.is(m('lantern_errors_total{code="LA_ERR_RATE_LIMITED"}'), 1);

  const peer = new RawPeer(`${server.url.replace(/^http/, 'ws')}/peerjs?key=peerjs&id=metrics-peer&token=t`);
  t.teardown(() => peer.close());
  await peer.next((f) => f['type'] === 'OPEN');
  t.is((await read(url))('lantern_peerjs_clients'), 1);
  t.is((await fetch(url.replace(/\/metrics$/, '/other'))).status, 404);

  // JSON logs on stderr, without the clients' addresses (the server logged logins at info).
  const lines = server.stderr().trim().split('\n').filter(Boolean);
  t.true(lines.length > 0);
  for (const line of lines) t.notThrows(() => JSON.parse(line), line);
  t.false(server.stderr().includes('127.0.0.1'), 'no IP address in the logs without --unsafe-logging');
});

test('--metrics-token-file: /metrics answers only with the bearer token', async (t) => {
  const dir = await tempDir('lantern-metrics-token-');
  t.teardown(() => dir.remove());
  const token = 'prometheus-scrape-token-0123456789';
  await writeFile(`${dir.path}/token`, `${token}\n`, { mode: 0o600 });
  const server = await startServer(`${dir.path}/data`, ['--metrics-listen', '127.0.0.1:0', '--metrics-token-file', `${dir.path}/token`]);
  t.teardown(() => server.stop());
  const url = String(server.events.find((e) => e['event'] === 'metrics-listening')?.['url']);
  const without = await fetch(url);
  t.is(without.status, 401);
  t.is(without.headers.get('www-authenticate'), 'Bearer');
  t.is((await fetch(url, { headers: { authorization: `Bearer ${token}x` } })).status, 401, 'a wrong token');
  const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  t.is(ok.status, 200);
  t.regex(await ok.text(), /^lantern_queued_messages 0$/m);
  await writeFile(`${dir.path}/short`, 'short\n');
  const refused = await runCli(['server', '--listen', '127.0.0.1:0', '--data-dir', `${dir.path}/data2`, '--metrics-listen', '127.0.0.1:0', '--metrics-token-file', `${dir.path}/short`]);
  t.is(refused.code, 2);
  t.regex(refused.stderr, /LA_ERR_CONFIG.*at least 16 characters/);
});
