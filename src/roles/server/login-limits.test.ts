import test from 'ava';
import { createCsr, generateDeviceKey } from '../../crypto/x509/device-key.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../protocol/version.js';
import { startInProcessServer } from '../../testing/helpers/in-process-server.js';
import { defaultServerOptions } from './options.js';

// Login limits that protect the victim: an attacker hammering an account from one network locks
// out only that network; the owner logs in from another. Client networks come from a trusted
// proxy's X-Forwarded-For here (the test is that proxy, on 127.0.0.1).

test('hammering an account from one network does not lock its owner out of another', async (t) => {
  const srv = await startInProcessServer({
    server: {
      clientAddress: { trustProxy: ['127.0.0.1'], header: 'X-Forwarded-For', prefix: { v4: 24, v6: 56 } },
      rate: { ...defaultServerOptions.rate, loginPerAddress: { capacity: 1000, refillPerSecond: 100 }, loginPerAccount: { capacity: 3, refillPerSecond: 0.001 } },
    },
  });
  t.teardown(() => srv.stop());
  await srv.device('victim');
  const csr = createCsr(await generateDeviceKey());
  const login = (password: string, from: string) =>
    fetch(`${srv.url}/v1/login`, {
      method: 'POST',
      headers: { [VERSION_HEADER]: String(PROTOCOL_VERSION), 'content-type': 'application/json', 'x-forwarded-for': from },
      body: JSON.stringify({ user: 'victim', password, csr }),
    }).then(async (r) => ({ status: r.status, code: r.status === 200 ? undefined : ((await r.json()) as { error: { code: string } }).error.code }));
  for (let i = 0; i < 3; i++) t.is((await login('wrong password here', '203.0.113.5')).code, 'LA_ERR_LOGIN_FAILED');
  t.is((await login('wrong password here', '203.0.113.5')).code, 'LA_ERR_RATE_LIMITED', 'the attacker is limited');
  t.is((await login('correct horse battery', '203.0.113.77')).code, 'LA_ERR_RATE_LIMITED', 'so is the rest of its /24');
  t.is((await login('correct horse battery', '198.51.100.7')).status, 200, 'the owner, from another network, logs in');
});
