import { randomUUID } from 'node:crypto';
import test from 'ava';
import { openAgent, requireCredential, withKeystore } from '../cli/agent-home.js';
import { MESSAGE_TYPE } from '../crypto/signal/signal-cipher.js';
import { addAgent, type TestAgent } from '../testing/helpers/agents.js';
import { runCli, sharedServer } from '../testing/helpers/cli.js';

// End-to-end encryption through the built CLI and server (libsignal 0.103 on both ends). Where a
// test must reorder or corrupt what the server delivers, it drives this project's client classes
// over the home's own keystore, between CLI runs.

const ctx = sharedServer(test, ['--rate-login-address', '1000/100', '--rate-prekey-fetch', '1000/100', '--rate-prekey-target', '1000/100']);

type Line = { id: string; text?: string; encrypted?: boolean; from: { userId: string; deviceId: number }; error?: { code: string } };

async function inbox(agent: TestAgent): Promise<Line[]> {
  const r = await runCli(['inbox', '--home', agent.home, '--json']);
  if (r.code !== 0) throw new Error(`inbox failed: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

async function send(from: TestAgent, to: TestAgent, text: string) {
  const r = await runCli(['send', '--home', from.home, '--to', to.userId, '--json', text]);
  return { ...r, json: r.code === 0 ? (JSON.parse(r.stdout) as { devices: number[]; ownDevices: number[] }) : undefined };
}

test('two users, three devices: a conversation both ways, one batch decrypted out of order', async (t) => {
  const alice = await addAgent(ctx.server, ctx.dir, 'alice');
  const bob = await addAgent(ctx.server, ctx.dir, 'bob');
  const bob2 = await addAgent(ctx.server, ctx.dir, 'bob', { existing: true, homeSuffix: '-phone' });
  for (const text of ['m1', 'm2', 'm3']) {
    const sent = await send(alice, bob, text);
    t.is(sent.code, 0, sent.stderr);
    t.deepEqual(sent.json!.devices, [1, 2]);
  }
  // Bob's first device takes the three ciphertexts and decrypts them as 3, 1, 2.
  const texts = await withKeystore(bob.home, async (keystore) => {
    const { api, cipher } = await openAgent(keystore, await requireCredential(keystore));
    try {
      const batch = (await api.poll(0))!;
      t.deepEqual(batch.messages.map((m) => m.type), [MESSAGE_TYPE.preKey, MESSAGE_TYPE.preKey, MESSAGE_TYPE.preKey]);
      const out: string[] = [];
      for (const i of [2, 0, 1]) {
        const m = batch.messages[i]!;
        out.push((JSON.parse(new TextDecoder().decode(await cipher!.decrypt(m.from, m.type, m.payload))) as { text: string }).text);
      }
      await api.ack(batch.messages.map((m) => m.id));
      return out;
    } finally {
      await api.close();
    }
  });
  t.deepEqual(texts, ['m3', 'm1', 'm2']);
  t.deepEqual((await inbox(bob2)).map((m) => [m.text, m.encrypted]), [['m1', true], ['m2', true], ['m3', true]]);
  // Replies: Bob's phone answers; his other device gets the copy; Alice reads it; and on it goes.
  const reply = await send(bob2, alice, 'hi alice');
  t.deepEqual(reply.json, { ...reply.json!, devices: [1], ownDevices: [1] });
  t.deepEqual((await inbox(alice)).map((m) => m.text), ['hi alice']);
  t.deepEqual((await inbox(bob)).map((m) => [m.text, m.from.deviceId]), [['hi alice', 2]]);
  t.is((await send(alice, bob, 'and back')).code, 0);
  t.deepEqual((await inbox(bob)).map((m) => m.text), ['and back']);
  t.deepEqual((await inbox(bob2)).map((m) => m.text), ['and back']);
});

test('a device with no one-time prekeys left is still reached, then tops its keys up', async (t) => {
  const carol = await addAgent(ctx.server, ctx.dir, 'carol');
  const dave = await addAgent(ctx.server, ctx.dir, 'dave');
  const api = await dave.api();
  t.teardown(() => api.close());
  for (let i = 0; i < 101; i++) await api.bundles(carol.userId);
  const carolApi = await carol.api();
  t.teardown(() => carolApi.close());
  t.deepEqual(await carolApi.keyCounts(), { preKeys: 0, kyberPreKeys: 0 });
  t.is((await send(dave, carol, 'still reachable')).code, 0);
  t.deepEqual((await inbox(carol)).map((m) => m.text), ['still reachable']);
  const counts = await carolApi.keyCounts();
  t.true(counts.preKeys >= 100 && counts.kyberPreKeys >= 20, `topped up: ${JSON.stringify(counts)}`);
});

test('a device added mid-conversation gets later messages (409), a re-registered one too (410)', async (t) => {
  const erin = await addAgent(ctx.server, ctx.dir, 'erin');
  const frank = await addAgent(ctx.server, ctx.dir, 'frank');
  t.is((await send(erin, frank, 'before')).code, 0);
  t.deepEqual((await inbox(frank)).map((m) => m.text), ['before']);
  const frank2 = await addAgent(ctx.server, ctx.dir, 'frank', { existing: true, homeSuffix: '-laptop' });
  const after = await send(erin, frank, 'after the new device');
  t.deepEqual(after.json?.devices, [1, 2], 'the 409 answer added the new device');
  t.deepEqual((await inbox(frank2)).map((m) => m.text), ['after the new device']);
  t.deepEqual((await inbox(frank)).map((m) => m.text), ['after the new device']);
  // Frank's laptop registers again (new registration id and prekeys, same identity key).
  const reset = await runCli(['login', '--server', ctx.server.url, '--user', 'frank', '--password-stdin', '--home', frank2.home, '--reset-keys'], {
    stdin: 'pw-frank-secret\n',
  });
  t.is(reset.code, 0, reset.stderr);
  const stale = await send(erin, frank, 'after the re-registration');
  t.deepEqual(stale.json?.devices, [1, 2], 'the 410 answer rebuilt the session');
  t.deepEqual((await inbox(frank2)).map((m) => m.text), ['after the re-registration']);
});

test('an identity change is refused until trusted; safety numbers match on both sides', async (t) => {
  const ivy = await addAgent(ctx.server, ctx.dir, 'ivy');
  const jon = await addAgent(ctx.server, ctx.dir, 'jon');
  t.is((await send(ivy, jon, 'hello jon')).code, 0);
  await inbox(jon);
  const ivySees = JSON.parse((await runCli(['safety-number', '--home', ivy.home, jon.userId, '--json'])).stdout) as { devices: Array<{ safetyNumber: string }> };
  t.is((await send(jon, ivy, 'hello ivy')).code, 0);
  await inbox(ivy);
  const jonSees = JSON.parse((await runCli(['safety-number', '--home', jon.home, ivy.userId, '--json'])).stdout) as { devices: Array<{ safetyNumber: string }> };
  t.regex(ivySees.devices[0]!.safetyNumber, /^\d{60}$/);
  t.is(ivySees.devices[0]!.safetyNumber, jonSees.devices[0]!.safetyNumber);
  // Jon's device is replaced by a new install with a new identity key on the same device id.
  t.is((await runCli(['account', 'revoke', 'jon', '--data-dir', ctx.server.dataDir, '--device', '1'])).code, 0);
  const newJon = await addAgent(ctx.server, ctx.dir, 'jon', { existing: true, homeSuffix: '-new' });
  t.is(newJon.deviceId, 1);
  const refused = await send(ivy, jon, 'are you still jon?');
  t.is(refused.code, 4);
  t.regex(refused.stderr, /LA_ERR_IDENTITY_CHANGED/);
  t.deepEqual(await inbox(newJon), [], 'nothing was sent');
  const changed = JSON.parse((await runCli(['safety-number', '--home', ivy.home, jon.userId, '--json'])).stdout) as { devices: Array<{ changed: boolean; safetyNumber: string }> };
  t.true(changed.devices[0]!.changed);
  t.not(changed.devices[0]!.safetyNumber, ivySees.devices[0]!.safetyNumber);
  const trust = await runCli(['trust', '--home', ivy.home, jon.userId, '--json']);
  t.deepEqual(JSON.parse(trust.stdout), { userId: jon.userId, acceptedDevices: [1] });
  t.is((await send(ivy, jon, 'welcome back')).code, 0);
  t.deepEqual((await inbox(newJon)).map((m) => m.text), ['welcome back']);
});

test('the server never holds the plaintext; a --raw message, for contrast, does', async (t) => {
  const kim = await addAgent(ctx.server, ctx.dir, 'kim');
  const leo = await addAgent(ctx.server, ctx.dir, 'leo');
  const secret = `secret-${randomUUID()}`;
  t.is((await send(kim, leo, secret)).code, 0);
  t.is((await runCli(['send', '--home', kim.home, '--to', leo.userId, '--raw', 'plain-control'])).code, 0);
  const api = await leo.api();
  t.teardown(() => api.close());
  const stored = (await api.poll(0))!.messages.map((m) => Buffer.from(m.payload, 'base64').toString('latin1'));
  t.is(stored.length, 2);
  t.false(stored[0]!.includes(secret), 'the encrypted payload does not contain the text');
  t.false(stored[0]!.includes(Buffer.from(secret).toString('base64')));
  t.true(stored[1]!.includes('plain-control'), 'the check can see plaintext when there is some');
});

test('a corrupted ciphertext is reported and kept, not lost; the conversation goes on', async (t) => {
  const max = await addAgent(ctx.server, ctx.dir, 'max');
  const nia = await addAgent(ctx.server, ctx.dir, 'nia');
  t.is((await send(max, nia, 'first')).code, 0);
  t.deepEqual((await inbox(nia)).map((m) => m.text), ['first']);
  t.is((await send(nia, max, 'got it')).code, 0);
  t.deepEqual((await inbox(max)).map((m) => m.text), ['got it']);
  // Max encrypts a next message (a normal SignalMessage now), but a byte flips on the way, inside
  // what its MAC covers.
  await withKeystore(max.home, async (keystore) => {
    const { api, cipher } = await openAgent(keystore, await requireCredential(keystore));
    try {
      const c = await cipher!.encrypt({ userId: nia.userId, deviceId: 1 }, new TextEncoder().encode(JSON.stringify({ v: 1, text: 'mangled' })));
      t.is(c.type, MESSAGE_TYPE.whisper);
      const bytes = Buffer.from(c.payload, 'base64');
      bytes[bytes.length - 12]! ^= 0xff;
      await api.send({ id: randomUUID(), to: nia.userId, messages: [{ deviceId: 1, registrationId: c.registrationId, type: c.type, payload: bytes.toString('base64') }] });
    } finally {
      await api.close();
    }
  });
  const r = await runCli(['inbox', '--home', nia.home, '--json']);
  t.is(r.code, 0);
  t.regex(r.stderr, /LA_ERR_DECRYPT_FAILED/, `stdout: ${r.stdout}`);
  const line = JSON.parse(r.stdout.trim()) as Line;
  t.is(line.error?.code, 'LA_ERR_DECRYPT_FAILED');
  const kept = await withKeystore(nia.home, (k) => k.get<{ payload?: string; error?: unknown }>(`inbox!${line.id}`));
  t.truthy(kept?.payload, 'the ciphertext is kept in the keystore');
  t.deepEqual(await inbox(nia), [], 'reported once, then acked');
  t.is((await send(max, nia, 'still talking')).code, 0);
  t.deepEqual((await inbox(nia)).map((m) => m.text), ['still talking']);
  t.is((await send(nia, max, 'me too')).code, 0);
  t.deepEqual((await inbox(max)).map((m) => m.text), ['me too']);
});
