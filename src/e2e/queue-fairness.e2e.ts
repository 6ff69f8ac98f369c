import { randomUUID } from 'node:crypto';
import test from 'ava';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, testServer } from '../testing/helpers/cli.js';

// Issue 15, item 4: one sender cannot fill a recipient's queue for everyone, and a full or dormant
// device never keeps a user's other devices from getting their messages. Whole binary, port 0.
// Dormancy is measured in real time: its window (10 s) is wide enough for CLI runs on a loaded machine.

const b64 = (s: string) => Buffer.from(s).toString('base64');

const texts = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { text: string }).text);

test("a flooding sender is refused beyond its share of the queue; the honest sender's messages all arrive", async (t) => {
  // Room for 40 messages, a quarter each (the default share); the per-pair rate would let the flood through.
  const { dir, server } = await testServer(t, ['--queue-max-messages', '40', '--rate-pair', '1000/100']);
  const [flooder, honest, victim] = await Promise.all(['flooder', 'honest', 'victim'].map((n) => addAgent(server, dir, n)));
  const api = await flooder!.api();
  t.teardown(() => api.close());
  const flood = await api.sendBatch(Array.from({ length: 100 }, (_, i) => ({ id: randomUUID(), to: victim!.userId, type: 0, payload: b64(`flood ${i}`) })));
  const accepted = flood.results.filter((r) => 'devices' in r);
  const refused = flood.results.filter((r) => 'error' in r);
  t.is(accepted.length, 10, 'a quarter of 40');
  t.deepEqual([...new Set(refused.map((r) => ('error' in r ? r.error.code : '')))], ['LA_ERR_QUEUE_SHARE_USED']);
  const cli = await runCli(['send', '--home', flooder!.home, '--to', victim!.userId, '--raw', 'one more']);
  t.is(cli.code, 5, 'the CLI exits 5 (retry later)');
  t.regex(cli.stderr, /LA_ERR_QUEUE_SHARE_USED/);

  const sent: string[] = [];
  for (let i = 0; i < 8; i++) {
    const text = `honest ${i}`;
    const r = await runCli(['send', '--home', honest!.home, '--to', victim!.userId, '--raw', text]);
    t.is(r.code, 0, r.stderr);
    sent.push(text);
  }
  const inbox = await runCli(['inbox', '--home', victim!.home, '--json']);
  t.is(inbox.code, 0, inbox.stderr);
  const got = texts(inbox.stdout);
  t.deepEqual(got.filter((x) => x.startsWith('honest')), sent, 'every honest message arrived, in order');
  t.is(got.filter((x) => x.startsWith('flood')).length, 10, 'and only the share of the flood');
  const again = await runCli(['send', '--home', flooder!.home, '--to', victim!.userId, '--raw', 'after delivery']);
  t.is(again.code, 0, 'delivered messages free the share');
});

test("a full device is skipped and the user's other device still gets the message; send says which", async (t) => {
  const { dir, server } = await testServer(t, ['--queue-max-messages', '2', '--queue-sender-share', '1']);
  const a = await addAgent(server, dir, 'a');
  const b1 = await addAgent(server, dir, 'b');
  const b2 = await addAgent(server, dir, 'b', { existing: true, homeSuffix: '-2' });
  t.is(b2.deviceId, 2);
  for (const text of ['one', 'two']) t.is((await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', text])).code, 0);
  t.deepEqual(texts((await runCli(['inbox', '--home', b1.home, '--json'])).stdout), ['one', 'two'], 'device 1 reads; device 2 does not');
  const third = await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', 'three']);
  t.is(third.code, 0, third.stderr);
  t.regex(third.stdout, /for device\(s\) 1; skipped device\(s\) 2 \(full\)/);
  const json = await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', 'four', '--json']);
  t.deepEqual((JSON.parse(json.stdout) as { skipped: unknown }).skipped, [{ deviceId: 2, reason: 'full' }]);
  t.deepEqual(texts((await runCli(['inbox', '--home', b1.home, '--json'])).stdout), ['three', 'four']);
  const only = await runCli(['send', '--home', a.home, '--to', `${b1.userId}:2`, '--raw', 'to the full one']);
  t.is(only.code, 5, 'a send that reaches no device fails');
  t.regex(only.stderr, /LA_ERR_QUEUE_FULL/);
  t.deepEqual(texts((await runCli(['inbox', '--home', b2.home, '--json'])).stdout), ['one', 'two'], 'the full device kept what it held');
});

test('a dormant device gets nothing more, its queue is deleted first, and a poll wakes it', async (t) => {
  // (20 s: from the poll that wakes device 2 to the inbox that reads it, a send runs in between,
  // which takes seconds on a loaded machine; at 10 s the device went dormant again in between.)
  const { dir, server } = await testServer(t, ['--dormant-after', '20', '--expire-interval', '200ms']);
  const a = await addAgent(server, dir, 'a');
  const b1 = await addAgent(server, dir, 'b');
  // Device 1 polls all along (the test's end stops it); device 2 never polls.
  const received: string[] = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      received.push(...texts((await runCli(['inbox', '--home', b1.home, '--json'])).stdout));
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  t.teardown(async () => {
    polling = false;
    await poller;
  });
  const b2 = await addAgent(server, dir, 'b', { existing: true, homeSuffix: '-2' });
  const created = Date.now();
  const before = await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', 'early', '--json']);
  t.deepEqual((JSON.parse(before.stdout) as { devices: number[] }).devices, [1, 2], 'both devices are fresh');
  await new Promise((r) => setTimeout(r, Math.max(0, created + 20_600 - Date.now())));
  const late = await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', 'late']);
  t.is(late.code, 0, late.stderr);
  t.regex(late.stdout, /for device\(s\) 1; skipped device\(s\) 2 \(dormant\)/);
  const only = await runCli(['send', '--home', a.home, '--to', `${b1.userId}:2`, '--raw', 'to the dormant one']);
  t.regex(only.stderr, /LA_ERR_RECIPIENT_DORMANT/);
  t.deepEqual(texts((await runCli(['inbox', '--home', b2.home, '--json'])).stdout), [], "the retention job deleted the dormant device's queue");
  const woken = await runCli(['send', '--home', a.home, '--to', b1.userId, '--raw', 'awake', '--json']);
  t.deepEqual((JSON.parse(woken.stdout) as { devices: number[] }).devices, [1, 2], 'its poll made it active again');
  t.deepEqual(texts((await runCli(['inbox', '--home', b2.home, '--json'])).stdout), ['awake']);
  polling = false;
  await poller;
  t.deepEqual(received, ['early', 'late', 'awake'], 'the device that polls got everything');
});
