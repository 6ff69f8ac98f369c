import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import { constants as h2 } from 'node:http2';
import test from 'ava';
import { silentLogger } from '../core/logger.js';
import { generateTicketKey, TicketIssuer } from '../crypto/tickets.js';
import { listen } from '../net/listen.js';
import { connectRelay } from '../testing/helpers/connect-relay.js';
import { getOver } from '../testing/helpers/give-client.js';
import { UpstreamPool } from '../roles/get/upstream-pool.js';
import { probePeer } from '../roles/verify/probe.js';

// Issue 16, item 1 (in part): what a give peer sees of a get client's tunnel and of a verifier's
// probe, field by field, on the one connection it serves. A recording peer (TLS with its own
// identity, HTTP/2 CONNECT, as the give role's transport) relays both to the same origin.

interface Seen {
  headerNames: string[];
  authority: string;
  claimKeys: string[];
  sub: string;
}

async function recordingPeer(t: { teardown(fn: () => unknown): void }) {
  const seen: Seen[] = [];
  const relay = await connectRelay(t, {
    onConnect: (headers) => {
      const basic = Buffer.from(String(headers['proxy-authorization']).replace(/^Basic /, ''), 'base64').toString();
      const claims = JSON.parse(Buffer.from(basic.replace(/^ticket:/, '').split('.')[0]!, 'base64url').toString()) as Record<string, unknown>;
      seen.push({ headerNames: Object.keys(headers), authority: String(headers[h2.HTTP2_HEADER_AUTHORITY]), claimKeys: Object.keys(claims), sub: String(claims['sub']) });
    },
  });
  return { peer: relay.peer, fingerprint: relay.identity.fingerprint, seen };
}

test("a verifier's probe and a get client's tunnel look the same to the peer: headers, ticket fields, destination form", async (t) => {
  const body = randomBytes(32 * 1024);
  const origin = createHttpServer((_req, res) => res.end(body));
  const originPort = (await listen(origin, '127.0.0.1', 0)).port;
  t.teardown(() => origin.close());
  const { peer, fingerprint, seen } = await recordingPeer(t);
  const issuer = new TicketIssuer(generateTicketKey().privateKeyPem);
  const ticketFor = (userId: string) => issuer.issue({ v: 1, sub: issuer.pseudonym(userId), exp: Date.now() + 3600_000, aud: fingerprint });

  // A get client (its upstream pool, the code get runs) fetches a page.
  const pool = new UpstreamPool({ source: { upstreams: () => [peer], ticket: async () => ticketFor(randomUUID()) }, logger: silentLogger() });
  t.teardown(() => pool.close());
  const tunnel = await pool.tunnel({ host: '127.0.0.1', port: originPort });
  t.deepEqual(await getOver(tunnel, `http://127.0.0.1:${originPort}/`), body);

  // A verifier (the probe verify runs) fetches a canary from the same origin.
  const canary = { nonce: '0'.repeat(32), path: '/', length: body.length, sha256: createHash('sha256').update(body).digest('hex') };
  const verdict = await probePeer({ ...peer, peerId: 'p' }, { ticket: ticketFor(randomUUID()), canary, server: { host: '127.0.0.1', port: originPort, tls: false }, timeoutMs: 3000, maxLatencyMs: 2000, minMbps: 0 });
  t.like(verdict, { ok: true });

  t.is(seen.length, 2);
  t.log(`headers the peer sees: ${seen[0]!.headerNames.join(' ')}; ticket fields: ${seen[0]!.claimKeys.join(' ')}`);
  const [user, probe] = seen as [Seen, Seen];
  t.deepEqual(probe.headerNames, user.headerNames, 'the same CONNECT headers, in the same order');
  t.deepEqual(probe.claimKeys, user.claimKeys, 'the same ticket fields');
  t.is(probe.sub.length, user.sub.length, 'subjects of one shape');
  t.not(probe.sub, user.sub, 'and nothing linking them');
  t.is(probe.authority, user.authority, 'the same destination form (here the same origin)');
});
