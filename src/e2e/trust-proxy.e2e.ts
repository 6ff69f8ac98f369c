import test from 'ava';
import { Agent, request } from 'undici';
import { PeerIdentity } from '../crypto/peer-identity.js';
import { RequestSigner } from '../crypto/request-signature.js';
import { createCsr, describeCertificate, generateDeviceKey } from '../crypto/x509/device-key.js';
import { LoginResponse, PeerInfo } from '../protocol/messages.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../protocol/version.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { startNginx } from '../testing/helpers/nginx.js';
import { until } from '../testing/helpers/observe.js';
import { requireTool } from '../testing/helpers/required-tools.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Behind a CDN stand-in (Debian's nginx, TLS-terminating and buffering, setting X-Forwarded-For),
// with `--trust-proxy 127.0.0.1`: give peers registering through it from different loopback
// addresses are registered at their own addresses, not nginx's; a header a client writes itself,
// through nginx or straight to the server, names nobody.

/** An HTTP client on `base` whose connections come from `localAddress`. */
function from(localAddress: string, base: string, ca?: string) {
  const dispatcher = new Agent({ localAddress, ...(ca ? { connect: { ca, servername: 'localhost' } } : {}) });
  return {
    close: () => dispatcher.close(),
    async call(method: string, path: string, body: unknown, signer?: RequestSigner, headers: Record<string, string> = {}) {
      const bytes = body === undefined ? '' : JSON.stringify(body);
      const res = await request(`${base}${path}`, {
        method: method as 'POST',
        dispatcher,
        headers: {
          [VERSION_HEADER]: String(PROTOCOL_VERSION),
          'content-type': 'application/json',
          ...(signer ? { authorization: signer.authorize(method, path, bytes, Date.now()) } : {}),
          ...headers,
        },
        ...(bytes ? { body: bytes } : {}),
      });
      return { status: res.statusCode, json: (await res.body.json()) as unknown };
    },
  };
}

async function device(client: ReturnType<typeof from>, user: string) {
  const key = await generateDeviceKey();
  const r = await client.call('POST', '/v1/login', { user, password: `pw-${user}-secret`, csr: createCsr(key) });
  if (r.status !== 200) throw new Error(`login ${user}: ${r.status} ${JSON.stringify(r.json)}`);
  const login = LoginResponse.parse(r.json);
  return new RequestSigner({ userId: login.userId, deviceId: login.deviceId, serial: describeCertificate(login.certificate).serial, privateKeyPem: key.privateKeyPem });
}

test('through a trusted nginx each give peer registers at its own address; spoofed headers name nobody', async (t) => {
  await requireTool('nginx');
  const dir = await tempDir('lantern-trust-');
  t.teardown(() => dir.remove());
  const dataDir = `${dir.path}/data`;
  const users = ['p2', 'p3', 'p4', 'p5'];
  for (const u of users) {
    const added = await runCli(['account', 'add', u, '--data-dir', dataDir, '--password-stdin'], { stdin: `pw-${u}-secret\n` });
    t.is(added.code, 0, added.stderr);
  }
  // With --unsafe-logging the log shows the addresses it would otherwise scrub: the resolved ones.
  const server = await startServer(dataDir, ['--trust-proxy', '127.0.0.1', '--unsafe-logging', '--log-level', 'info']);
  t.teardown(() => server.stop());
  const nginx = await startNginx(`${dir.path}/nginx`, [{ serverName: 'localhost', defaultServer: true, upstream: Number(new URL(server.url).port) }]);
  t.teardown(() => nginx.stop());
  const cdn = `https://127.0.0.1:${nginx.port}`;
  const register = async (client: ReturnType<typeof from>, user: string, headers: Record<string, string> = {}) => {
    const signer = await device(client, user);
    const r = await client.call('POST', '/v1/peers', { port: 8443, protocols: ['connect'], identityKey: new PeerIdentity().publicKey }, signer, headers);
    t.is(r.status, 200, JSON.stringify(r.json));
    return PeerInfo.parse(r.json).host;
  };
  // Two give peers behind the CDN, each from its own address.
  for (const [user, address] of [
    ['p2', '127.0.0.2'],
    ['p3', '127.0.0.3'],
  ] as const) {
    const client = from(address, cdn, nginx.ca);
    t.is(await register(client, user), address, `${user} is registered at ${address}, not at the edge`);
    await client.close();
  }
  // A client that writes X-Forwarded-For itself, through nginx: nginx appends what it saw.
  const viaCdn = from('127.0.0.5', cdn, nginx.ca);
  t.is(await register(viaCdn, 'p5', { 'x-forwarded-for': '192.0.2.66' }), '127.0.0.5', 'the spoofed hop sits left of the real one');
  await viaCdn.close();
  // The same header straight to the server, from an address that is not trusted: ignored.
  const direct = from('127.0.0.4', server.url);
  t.is(await register(direct, 'p4', { 'x-forwarded-for': '192.0.2.66' }), '127.0.0.4');
  await direct.close();
  const logged = () =>
    server
      .stderr()
      .split('\n')
      .flatMap((line) => {
        try {
          const entry = JSON.parse(line) as { msg?: string; client?: string };
          return entry.msg === 'give peer registered' ? [entry.client] : [];
        } catch {
          return [];
        }
      });
  // The server's log comes on its stderr, perhaps after the last answer.
  await until('four registrations logged', async () => (logged().length >= 4 ? true : undefined), 3000).catch(() => undefined);
  t.deepEqual(logged(), ['127.0.0.2', '127.0.0.3', '127.0.0.5', '127.0.0.4'], 'the log names the client, never the edge');
});
