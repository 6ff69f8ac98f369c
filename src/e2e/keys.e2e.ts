import { randomUUID } from 'node:crypto';
import test from 'ava';
import { LanternError } from '../core/errors.js';
import { generateIdentity, generateKeysUpload } from '../crypto/signal/key-generation.js';
import { addAgent, type TestAgent } from '../testing/helpers/agents.js';
import { sharedServer } from '../testing/helpers/cli.js';

// Signal key distribution and per-device sends against the built server, with keys made by libsignal.

const ctx = sharedServer(test, ['--rate-login-address', '1000/100', '--rate-prekey-fetch', '5/0.01']);

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function register(agent: TestAgent, preKeys = 3, kyberPreKeys = 2) {
  const { identity, registrationId } = generateIdentity();
  const { upload } = generateKeysUpload(identity, registrationId, { preKeys, kyberPreKeys });
  const api = await agent.api();
  try {
    return { counts: await api.putKeys(upload), upload, identity, registrationId };
  } finally {
    await api.close();
  }
}

test('devices upload their own keys; bundles pop one-time keys and fall back to the last-resort Kyber key', async (t) => {
  const bob = await addAgent(ctx.server, ctx.dir, 'bob');
  const bob2 = await addAgent(ctx.server, ctx.dir, 'bob', { existing: true, homeSuffix: '-2' });
  const alice = await addAgent(ctx.server, ctx.dir, 'alice');
  const b1 = await register(bob, 2, 1);
  const b2 = await register(bob2, 0, 0);
  t.deepEqual(b1.counts, { preKeys: 2, kyberPreKeys: 1 });
  const api = await alice.api();
  t.teardown(() => api.close());
  const first = await api.bundles(bob.userId);
  t.deepEqual(first.devices.map((d) => d.deviceId), [1, 2]);
  const d1 = first.devices[0]!;
  t.is(d1.identityKey, b1.upload.identityKey);
  t.is(d1.registrationId, b1.registrationId);
  t.is(d1.preKey?.keyId, b1.upload.preKeys![0]!.keyId);
  t.is(d1.kyberPreKey.keyId, b1.upload.kyberPreKeys![0]!.keyId, 'a one-time Kyber key first');
  t.is(first.devices[1]!.preKey, undefined, 'a device with no one-time EC keys still has a bundle');
  t.is(first.devices[1]!.kyberPreKey.keyId, b2.upload.kyberLastResort.keyId);
  const second = await api.bundles(bob.userId, 1);
  t.is(second.devices[0]!.preKey?.keyId, b1.upload.preKeys![1]!.keyId, 'the next fetch pops the next key');
  t.is(second.devices[0]!.kyberPreKey.keyId, b1.upload.kyberLastResort.keyId, 'then the last-resort Kyber key');
  const bobApi = await bob.api();
  t.teardown(() => bobApi.close());
  t.deepEqual(await bobApi.keyCounts(), { preKeys: 0, kyberPreKeys: 0 }, 'the device sees it should top up');
  await t.throwsAsync(api.bundles(randomUUID()), { code: 'LA_ERR_RECIPIENT_NOT_FOUND' } as never);
  await t.throwsAsync(api.bundles(bob.userId, 9), { code: 'LA_ERR_NO_KEYS' } as never);
});

test('uploads with a bad signature or an unreadable key get 422 and change nothing', async (t) => {
  const carol = await addAgent(ctx.server, ctx.dir, 'carol');
  const good = await register(carol, 3, 0);
  const api = await carol.api();
  t.teardown(() => api.close());
  const other = generateIdentity();
  const forged = generateKeysUpload(other.identity, good.registrationId, { preKeys: 1, kyberPreKeys: 0 }).upload;
  const mixed = { ...good.upload, signedPreKey: forged.signedPreKey };
  const err = await t.throwsAsync(api.putKeys(mixed));
  t.true(LanternError.is(err, 'LA_ERR_BAD_KEY_SIGNATURE'));
  t.is((err as LanternError).details?.['status'], 422);
  await t.throwsAsync(api.putKeys({ ...good.upload, kyberLastResort: forged.kyberLastResort }), { code: 'LA_ERR_BAD_KEY_SIGNATURE' } as never);
  const zeros = Buffer.alloc(33).toString('base64');
  await t.throwsAsync(api.putKeys({ ...good.upload, preKeys: [{ keyId: 7, publicKey: zeros }] }), { code: 'LA_ERR_INVALID_KEY' } as never);
  t.deepEqual(await api.keyCounts(), { preKeys: 3, kyberPreKeys: 0 });
});

test('bundle fetches are rate limited per requester and target device', async (t) => {
  const dave = await addAgent(ctx.server, ctx.dir, 'dave');
  const erin = await addAgent(ctx.server, ctx.dir, 'erin');
  await register(dave, 10, 0);
  const api = await erin.api();
  t.teardown(() => api.close());
  for (let i = 0; i < 5; i++) await api.bundles(dave.userId);
  const err = await t.throwsAsync(api.bundles(dave.userId));
  t.true(LanternError.is(err, 'LA_ERR_RATE_LIMITED'));
  t.is((err as LanternError).details?.['status'], 429);
});

test('per-device sends are all or nothing: 409 for missing or extra devices, 410 for stale ones', async (t) => {
  const gus = await addAgent(ctx.server, ctx.dir, 'gus');
  const gus2 = await addAgent(ctx.server, ctx.dir, 'gus', { existing: true, homeSuffix: '-2' });
  const hal = await addAgent(ctx.server, ctx.dir, 'hal');
  const r1 = await register(gus);
  const r2 = await register(gus2);
  const api = await hal.api();
  t.teardown(() => api.close());
  const msg = (deviceId: number, registrationId: number, text: string) => ({ deviceId, registrationId, type: 1, payload: b64(text) });
  const mismatch = await t.throwsAsync(api.send({ id: randomUUID(), to: gus.userId, messages: [msg(1, r1.registrationId, 'x'), msg(3, 5, 'x')] }));
  t.true(LanternError.is(mismatch, 'LA_ERR_DEVICE_MISMATCH'));
  t.like((mismatch as LanternError).details, { status: 409, missingDevices: [2], extraDevices: [3] });
  const stale = await t.throwsAsync(api.send({ id: randomUUID(), to: gus.userId, messages: [msg(1, r1.registrationId, 'x'), msg(2, r2.registrationId + 1, 'x')] }));
  t.true(LanternError.is(stale, 'LA_ERR_STALE_DEVICES'));
  t.like((stale as LanternError).details, { status: 410, staleDevices: [2] });
  const ok = await api.send({ id: randomUUID(), to: gus.userId, messages: [msg(1, r1.registrationId, 'for one'), msg(2, r2.registrationId, 'for two')] });
  t.deepEqual(ok.devices, [1, 2]);
  const texts = async (agent: TestAgent) => {
    const a = await agent.api();
    try {
      return ((await a.poll(0))?.messages ?? []).map((m) => `${m.type}:${Buffer.from(m.payload, 'base64').toString()}`);
    } finally {
      await a.close();
    }
  };
  t.deepEqual(await texts(gus), ['1:for one'], 'nothing from the refused sends, then its own ciphertext');
  t.deepEqual(await texts(gus2), ['1:for two']);
  // To oneself: every registered device but the sender.
  const own = await gus.api();
  t.teardown(() => own.close());
  const selfMismatch = await t.throwsAsync(own.send({ id: randomUUID(), to: gus.userId, messages: [msg(1, r1.registrationId, 'x')] }));
  t.like((selfMismatch as LanternError).details, { missingDevices: [2], extraDevices: [1] });
  t.deepEqual((await own.send({ id: randomUUID(), to: gus.userId, messages: [msg(2, r2.registrationId, 'sync')] })).devices, [2]);
  // Re-registration (new identity and registration id) makes senders see 410.
  const again = await register(gus2);
  const after = await t.throwsAsync(api.send({ id: randomUUID(), to: gus.userId, messages: [msg(1, r1.registrationId, 'x'), msg(2, r2.registrationId, 'x')] }));
  t.true(LanternError.is(after, 'LA_ERR_STALE_DEVICES') || again.registrationId === r2.registrationId);
});
