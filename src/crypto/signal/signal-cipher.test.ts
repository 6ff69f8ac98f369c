import { randomUUID } from 'node:crypto';
import test from 'ava';
import type { Address, DeviceBundle, KeysUpload } from '../../protocol/messages.js';
import { MemoryKeystore } from '../../storage/memory-keystore.js';
import { ContactIdentities } from './contact-identities.js';
import { DeviceKeys } from './device-keys.js';
import { MESSAGE_TYPE, SignalCipher } from './signal-cipher.js';
import { sessionKey, signalStores } from './stores.js';

async function device(keystore = new MemoryKeystore()) {
  await keystore.open();
  const address: Address = { userId: randomUUID(), deviceId: 1 };
  const keys = new DeviceKeys(keystore);
  const upload = await keys.upload({ preKeys: 5, kyberPreKeys: 2 });
  const stores = signalStores(keystore);
  return { address, keystore, keys, upload, stores, cipher: new SignalCipher({ stores }, address) };
}

const bundleOf = (u: KeysUpload, i = 0): DeviceBundle => ({
  deviceId: 1,
  registrationId: u.registrationId,
  identityKey: u.identityKey,
  signedPreKey: u.signedPreKey,
  kyberPreKey: u.kyberPreKeys?.[i] ?? u.kyberLastResort,
  ...(u.preKeys?.[i] ? { preKey: u.preKeys[i] } : {}),
});
const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array) => new TextDecoder().decode(b);

test('a session from a bundle carries messages both ways, also out of order', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  const c1 = await a.cipher.encrypt(b.address, text('one'));
  const c2 = await a.cipher.encrypt(b.address, text('two'));
  t.is(c1.type, MESSAGE_TYPE.preKey);
  t.is(c1.registrationId, b.upload.registrationId);
  t.is(str(await b.cipher.decrypt(a.address, c2.type, c2.payload)), 'two');
  t.is(str(await b.cipher.decrypt(a.address, c1.type, c1.payload)), 'one');
  await t.throwsAsync(b.cipher.decrypt(a.address, c1.type, c1.payload), { code: 'LA_ERR_DUPLICATE_MESSAGE' } as never);
  const r = await b.cipher.encrypt(a.address, text('back'));
  t.is(str(await a.cipher.decrypt(b.address, r.type, r.payload)), 'back');
  const next = await a.cipher.encrypt(b.address, text('whisper'));
  t.is(next.type, MESSAGE_TYPE.whisper, 'once answered, normal messages');
  t.is(str(await b.cipher.decrypt(a.address, next.type, next.payload)), 'whisper');
});

test('records survive a new process (a new store over the same keystore)', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  const c = await a.cipher.encrypt(b.address, text('persisted'));
  const fresh = new SignalCipher({ stores: signalStores(b.keystore) }, b.address);
  t.is(str(await fresh.decrypt(a.address, c.type, c.payload)), 'persisted');
});

test('a session stored as base64 (before sessions were kept as bytes) is read as before', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  const c = await a.cipher.encrypt(b.address, text('first'));
  t.is(str(await b.cipher.decrypt(a.address, c.type, c.payload)), 'first');
  const key = sessionKey(a.address.userId, a.address.deviceId);
  const stored = await b.keystore.get<Uint8Array>(key);
  t.true(stored instanceof Uint8Array, 'a session is stored as bytes');
  await b.keystore.put(key, Buffer.from(stored!).toString('base64'));
  const fresh = new SignalCipher({ stores: signalStores(b.keystore) }, b.address);
  const c2 = await a.cipher.encrypt(b.address, text('second'));
  t.is(str(await fresh.decrypt(a.address, c2.type, c2.payload)), 'second');
  t.true((await b.keystore.get(key)) instanceof Uint8Array, 'and written back as bytes');
});

test('a retired session still decrypts what the peer sent with it', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  const c1 = await a.cipher.encrypt(b.address, text('first'));
  await b.cipher.decrypt(a.address, c1.type, c1.payload);
  const r = await b.cipher.encrypt(a.address, text('ack'));
  await a.cipher.decrypt(b.address, r.type, r.payload);
  const inFlight = await a.cipher.encrypt(b.address, text('in flight'));
  await b.cipher.dropSession(a.address);
  t.false(await b.cipher.hasSession(a.address));
  t.is(str(await b.cipher.decrypt(a.address, inFlight.type, inFlight.payload)), 'in flight');
});

test('a changed identity is refused for sending until trusted; garbage is a decrypt failure', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  // The same address comes back with a new identity (a new install).
  const b2 = await device();
  const impostor = bundleOf(b2.upload);
  await t.throwsAsync(a.cipher.processBundle(b.address.userId, impostor), { code: 'LA_ERR_IDENTITY_CHANGED' } as never);
  const contacts = new ContactIdentities(a.keystore, a.stores);
  t.truthy((await contacts.devices(b.address.userId))[0]!.pending);
  t.deepEqual(await contacts.trust(b.address.userId), [1]);
  await t.notThrowsAsync(a.cipher.processBundle(b.address.userId, impostor), 'the same cipher sees the trust');
  await t.throwsAsync(a.cipher.decrypt(b.address, MESSAGE_TYPE.whisper, Buffer.from('garbage').toString('base64')), {
    code: 'LA_ERR_DECRYPT_FAILED',
  } as never);
});

test('a crash between decrypting and storing loses nothing when both are in one keystore transaction', async (t) => {
  const a = await device();
  const b = await device();
  await a.cipher.processBundle(b.address.userId, bundleOf(b.upload));
  const c = await a.cipher.encrypt(b.address, text('survives'));
  await t.throwsAsync(
    b.keystore.transaction(async () => {
      t.is(str(await b.cipher.decrypt(a.address, c.type, c.payload)), 'survives');
      throw new Error('crash before the message was stored');
    }),
  );
  // A new process over the same keystore: the ratchet did not move on disk, so the redelivery decrypts.
  const restarted = new SignalCipher({ stores: signalStores(b.keystore) }, b.address);
  t.is(str(await restarted.decrypt(a.address, c.type, c.payload)), 'survives');
});
