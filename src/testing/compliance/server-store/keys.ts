import { randomUUID } from 'node:crypto';
import { cred, KEY_A, registerPeer, b64, keys, type WithStore } from './helpers.js';

/** Key distribution (KeyStore). */
export function keysCompliance(withStore: WithStore): void {
  withStore('1,000 concurrent bundle fetches never serve a one-time key twice', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.putDevice(to.userId, cred(1), 1);
    await s.putKeys(to, keys());
    t.deepEqual(await s.keyCounts(to), { preKeys: 100, kyberPreKeys: 100 });
    const bundles = await Promise.all(Array.from({ length: 1000 }, () => s.takeBundle(to)));
    const ec = bundles.flatMap((b) => (b?.preKey ? [b.preKey.keyId] : []));
    const kyber = bundles.map((b) => b!.kyberPreKey.keyId);
    t.is(ec.length, 100, 'every one-time EC key served once, then none');
    t.is(new Set(ec).size, 100);
    const oneTimeKyber = kyber.filter((id) => id !== 9999);
    t.is(oneTimeKyber.length, 100);
    t.is(new Set(oneTimeKyber).size, 100, 'no one-time Kyber key twice');
    t.is(kyber.filter((id) => id === 9999).length, 900, 'then the last-resort Kyber key');
    t.deepEqual(await s.keyCounts(to), { preKeys: 0, kyberPreKeys: 0 });
    const empty = await s.takeBundle(to);
    t.is(empty!.preKey, undefined, 'a bundle without a one-time EC key is still a bundle');
    t.is(empty!.signedPreKey.keyId, 1);
    t.is(await s.takeBundle({ ...to, deviceId: 2 }), undefined, 'no keys, no bundle');
  });

  withStore('a bundle without one-time keys pops none', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.putDevice(to.userId, cred(1), 1);
    await s.putKeys(to, keys());
    const bare = await s.takeBundle(to, { oneTime: false });
    t.is(bare!.preKey, undefined);
    t.is(bare!.kyberPreKey.keyId, 9999, 'the last-resort Kyber key');
    t.is(bare!.signedPreKey.keyId, 1);
    t.deepEqual(await s.keyCounts(to), { preKeys: 100, kyberPreKeys: 100 }, 'nothing popped');
    t.is((await s.takeBundle(to))!.preKey!.keyId, 1, 'the next full bundle gets the first key');
  });

  withStore('key uploads replace signed keys and non-empty one-time lists; re-registration drops old ones', async (t, s) => {
    const to = { userId: randomUUID(), deviceId: 1 };
    await s.putDevice(to.userId, cred(1), 1);
    await s.putDevice(to.userId, cred(2), 1);
    await s.putKeys(to, keys());
    await s.putKeys(to, keys({ signedPreKey: { keyId: 2, publicKey: b64(33, 7), signature: b64(64, 8) }, preKeys: [], kyberPreKeys: undefined }));
    t.deepEqual(await s.keyCounts(to), { preKeys: 100, kyberPreKeys: 100 }, 'empty lists keep the stored ones');
    t.is((await s.takeBundle(to))!.signedPreKey.keyId, 2, 'the new signed key replaced the old one');
    await s.putKeys(to, keys({ preKeys: [{ keyId: 500, publicKey: b64(33, 9) }], kyberPreKeys: [] }));
    t.deepEqual(await s.keyCounts(to), { preKeys: 1, kyberPreKeys: 99 }, 'a non-empty list replaces the whole list');
    t.is((await s.takeBundle(to))!.preKey!.keyId, 500);
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1001 }], 'only devices with keys count');
    await s.putKeys(to, keys({ preKeys: undefined, kyberPreKeys: undefined }, 2));
    t.deepEqual(await s.keyCounts(to), { preKeys: 0, kyberPreKeys: 0 }, 'a new identity drops the old one-time keys');
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1002 }]);
    await s.putKeys({ userId: to.userId, deviceId: 2 }, keys({}, 3));
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 1, registrationId: 1002 }, { deviceId: 2, registrationId: 1003 }], 'by device id');
    await s.revokeDevice(to.userId, 1, 2);
    t.deepEqual(await s.registrations(to.userId), [{ deviceId: 2, registrationId: 1003 }], 'a revoked device does not count');
    t.is(await s.takeBundle(to), undefined, 'revoking a device deletes its keys');
    await s.putDevice(to.userId, cred(5), 3);
    await registerPeer(s, { userId: to.userId, deviceId: 2, host: '203.0.113.9', port: 1, protocols: ['connect'], identityKey: KEY_A }, 3, 1000);
    await s.revokeDevice(to.userId, 2, 4);
    t.deepEqual(await s.listPeers(5), [], 'and its peer registration');
    t.deepEqual(await s.registrations(to.userId), []);
  });
}
