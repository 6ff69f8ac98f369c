import test from 'ava';
import { LanternError } from '../core/errors.js';
import type { DeviceBundle } from '../protocol/messages.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Issue 15, item 5: many requesting devices together cannot drain a victim's one-time prekeys; the
// victim stays reachable, and its next poll tells it to top up. Whole binary, port 0.

test("six devices of one account cannot drain a victim's one-time keys; sessions still work and the victim tops up on its next poll", async (t) => {
  const dir = await tempDir('lantern-e2e-');
  // 85 one-time keys may leave the victim's device (whoever asks); 20 fetches per requesting device (the default).
  const server = await startServer(`${dir.path}/data`, ['--rate-prekey-target', '85/0.001', '--rate-login-address', '1000/100']);
  t.teardown(async () => {
    await server.stop();
    await dir.remove();
  });
  const victim = await addAgent(server, dir.path, 'victim');
  const mallory = [await addAgent(server, dir.path, 'mallory', { homeSuffix: '-1' })];
  for (let i = 2; i <= 7; i++) mallory.push(await addAgent(server, dir.path, 'mallory', { existing: true, homeSuffix: `-${i}` }));
  const victimApi = await victim.api();
  t.teardown(() => victimApi.close());
  t.deepEqual(await victimApi.keyCounts(), { preKeys: 100, kyberPreKeys: 20 }, 'login uploaded a full batch');

  const bundles: DeviceBundle[] = [];
  let refused = 0;
  await Promise.all(
    mallory.slice(0, 6).map(async (m) => {
      const api = await m.api();
      try {
        for (let i = 0; i < 25; i++) {
          try {
            bundles.push(...(await api.bundles(victim.userId)).devices);
          } catch (err) {
            if (!LanternError.is(err, 'LA_ERR_RATE_LIMITED')) throw err;
            refused++;
          }
        }
      } finally {
        await api.close();
      }
    }),
  );
  const withOneTime = bundles.filter((b) => b.preKey !== undefined);
  const bare = bundles.filter((b) => b.preKey === undefined);
  t.true(bundles.length >= 120, `every device got its 20 fetches (${bundles.length}, ${refused} refused)`);
  t.is(withOneTime.length, 85, 'only the target budget of one-time EC keys left the victim');
  t.true(bare.length >= 35, 'the rest are bundles without one-time keys, not refusals');
  t.is(new Set(bare.map((b) => b.kyberPreKey.keyId)).size, 1, 'they carry the last-resort Kyber key');
  t.deepEqual(await victimApi.keyCounts(), { preKeys: 15, kyberPreKeys: 0 });

  // Nothing queued: only the poll's Lantern-Keys header can make the inbox top up.
  const poll = await runCli(['inbox', '--home', victim.home, '--json']);
  t.is(poll.code, 0, poll.stderr);
  t.is(poll.stdout, '');
  const after = await victimApi.keyCounts();
  t.true(after.preKeys >= 100 && after.kyberPreKeys >= 20, `the victim uploaded a new batch (${JSON.stringify(after)})`);

  // A seventh device, over the target budget, still builds a session from a bundle without one-time keys.
  const sent = await runCli(['send', '--home', mallory[6]!.home, '--to', victim.userId, 'still reachable']);
  t.is(sent.code, 0, sent.stderr);
  const inbox = await runCli(['inbox', '--home', victim.home, '--json']);
  t.deepEqual(
    inbox.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { text: string }).text),
    ['still reachable'],
  );
});
