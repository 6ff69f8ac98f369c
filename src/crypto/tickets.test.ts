import { randomUUID } from 'node:crypto';
import test from 'ava';
import { LanternError } from '../core/errors.js';
import { generateTicketKey, TicketIssuer, TicketVerifier } from './tickets.js';

test('a ticket is good only for its audience, only until it expires, only under its key', (t) => {
  const key = generateTicketKey();
  const issuer = new TicketIssuer(key.privateKeyPem);
  const verifier = new TicketVerifier(key.publicKeyPem);
  const sub = randomUUID();
  const proxy = issuer.issue({ v: 1, sub, exp: 10_000 });
  const broker = issuer.issue({ v: 1, sub, exp: 10_000, aud: 'peerjs' });
  t.true(broker.length <= 255, 'fits a SOCKS5 password and a URL');
  t.is(verifier.verify(proxy, 1).sub, sub);
  t.is(verifier.verify(broker, 1, 'peerjs').sub, sub);
  const code = (f: () => unknown) => (t.throws(f) as LanternError).code;
  t.is(code(() => verifier.verify(broker, 1)), 'LA_ERR_TICKET_INVALID', 'a broker ticket does not open give proxies');
  t.is(code(() => verifier.verify(proxy, 1, 'peerjs')), 'LA_ERR_TICKET_INVALID', 'a proxy ticket does not register broker ids');
  t.is(code(() => verifier.verify(proxy, 10_000)), 'LA_ERR_TICKET_EXPIRED', 'also once cached');
  t.is(code(() => new TicketVerifier(generateTicketKey().publicKeyPem).verify(broker, 1, 'peerjs')), 'LA_ERR_TICKET_INVALID');
  // Tampered claims: the first character of the body changes, the signature no longer matches.
  t.is(code(() => verifier.verify(`${proxy[0] === 'e' ? 'f' : 'e'}${proxy.slice(1)}`, 1)), 'LA_ERR_TICKET_INVALID');
});
