import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import test from 'ava';
import { RequestSigner } from '../../crypto/request-signature.js';
import { MemoryServerStore } from '../../storage/memory-server-store.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { Authenticator } from './authenticator.js';

async function setup() {
  const store = new MemoryServerStore();
  await store.open();
  const clock = new FakeClock();
  const userId = randomUUID();
  const device = await store.putDevice(userId, { serial: 'aa01', publicKeyPem: 'unused', expiresAt: clock.now() + 86_400_000 }, clock.now());
  const privateKeyPem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const signer = new RequestSigner({ userId, deviceId: device.deviceId, serial: 'aa01', privateKeyPem });
  const session = { id: randomUUID(), key: randomBytes(32).toString('base64'), expiresAt: clock.now() + 3_600_000 };
  await store.putSession({ ...session, userId, deviceId: device.deviceId });
  const auth = new Authenticator({ store, clock });
  const request = () =>
    auth.authenticate({ method: 'GET', path: '/v1/whoami', body: Buffer.alloc(0), authorization: signer.authorizeWithSession(session, 'GET', '/v1/whoami', '', clock.now()) });
  return { store, clock, userId, deviceId: device.deviceId, request };
}

// Session records are cached by the authenticator; these show the cache never outlives the session.

test('a cached session stops working as soon as its device is revoked', async (t) => {
  const { store, clock, userId, deviceId, request } = await setup();
  t.like(await request(), { userId, deviceId, scheme: 'LA1S' });
  t.like(await request(), { userId }, 'the second request is served from the cached record');
  await store.revokeDevice(userId, deviceId, clock.now());
  await t.throwsAsync(request(), { code: 'LA_ERR_AUTH_SESSION_EXPIRED' } as never);
});

test('a cached session stops working when the credential is renewed, and at its expiry', async (t) => {
  const renewed = await setup();
  await renewed.request();
  await renewed.store.putDevice(renewed.userId, { serial: 'aa02', publicKeyPem: 'unused', expiresAt: renewed.clock.now() + 1e9 }, renewed.clock.now(), renewed.deviceId);
  await t.throwsAsync(renewed.request(), { code: 'LA_ERR_AUTH_SESSION_EXPIRED' } as never);

  const expiring = await setup();
  await expiring.request();
  expiring.clock.advance(3_600_000);
  await t.throwsAsync(expiring.request(), { code: 'LA_ERR_AUTH_SESSION_EXPIRED' } as never);
});

test('a thousand requests in a row (across refills of the nonce pool) are all accepted: no nonce comes twice', async (t) => {
  const { request, store } = await setup();
  const nonces = new Set<string>();
  const claim = store.claimNonce.bind(store);
  store.claimNonce = async (scope, nonce, expiresAt) => {
    nonces.add(nonce);
    return claim(scope, nonce, expiresAt);
  };
  for (let i = 0; i < 1000; i++) await request();
  t.is(nonces.size, 1000);
  t.true([...nonces].every((n) => /^[A-Za-z0-9_-]{22}$/.test(n)), 'each 16 random bytes, base64url');
});
