import { randomUUID } from 'node:crypto';
import test from 'ava';
import { LanternError } from '../core/errors.js';
import { PeerIdentity } from './peer-identity.js';
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

test('a give peer that knows its fingerprint opens only tickets whose aud names it', (t) => {
  const key = generateTicketKey();
  const issuer = new TicketIssuer(key.privateKeyPem);
  const mine = new PeerIdentity().fingerprint;
  const verifier = new TicketVerifier(key.publicKeyPem, { peer: mine });
  const sub = randomUUID();
  const forMe = issuer.issue({ v: 1, sub, exp: 10_000, aud: mine });
  t.true(forMe.length <= 255, `${forMe.length} bytes fit a SOCKS5 password`);
  t.is(verifier.verify(forMe, 1).sub, sub);
  const code = (f: () => unknown) => (t.throws(f) as LanternError).code;
  t.is(code(() => verifier.verify(issuer.issue({ v: 1, sub, exp: 10_000, aud: new PeerIdentity().fingerprint }), 1)), 'LA_ERR_TICKET_INVALID', 'another peer\'s ticket');
  t.is(code(() => verifier.verify(issuer.issue({ v: 1, sub, exp: 10_000 }), 1)), 'LA_ERR_TICKET_INVALID', 'a ticket for no peer in particular');
  t.is(code(() => verifier.verify(issuer.issue({ v: 1, sub, exp: 10_000, aud: 'peerjs' }), 1)), 'LA_ERR_TICKET_INVALID', 'a broker ticket');
  t.is(code(() => verifier.verify(forMe, 1, 'peerjs')), 'LA_ERR_TICKET_INVALID', 'a proxy ticket does not register broker ids');
});

test('only the canonical encoding of a ticket is accepted: no junk appended, no stray bits, no padding', (t) => {
  const key = generateTicketKey();
  const issuer = new TicketIssuer(key.privateKeyPem);
  const verifier = new TicketVerifier(key.publicKeyPem);
  const ticket = issuer.issue({ v: 1, sub: randomUUID(), exp: 10_000 });
  t.truthy(verifier.verify(ticket, 1));
  const [body, sig] = ticket.split('.') as [string, string];
  // The last character of an 86-character signature carries 4 unused bits: flip one of them.
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(sig.at(-1)!);
  const strayBits = `${body}.${sig.slice(0, -1)}${alphabet[last ^ 1]}`;
  t.is(Buffer.from(strayBits.split('.')[1]!, 'base64url').toString('base64url'), sig, 'decodes to the same signature');
  for (const variant of [`${ticket}!!`, `${ticket}=`, `${ticket} `, `${body}.${sig}==`, `${body}!.${sig}`, strayBits, `.${sig}`, `${body}.`]) {
    t.is((t.throws(() => verifier.verify(variant, 1)) as LanternError).code, 'LA_ERR_TICKET_INVALID', JSON.stringify(variant));
  }
});

test('each ticket names its user by a new pseudonym that only the issuing server reads back', (t) => {
  const key = generateTicketKey();
  const issuer = new TicketIssuer(key.privateKeyPem);
  const userId = randomUUID();
  const [a, b] = [issuer.pseudonym(userId), issuer.pseudonym(userId)];
  t.not(a, b, 'two tickets of one user cannot be linked');
  t.regex(a, /^[A-Za-z0-9_-]{38}$/);
  t.is(issuer.subjectOf(a), userId);
  t.is(issuer.subjectOf(b), userId);
  t.is(new TicketIssuer(key.privateKeyPem).subjectOf(a), userId, 'every instance with the ticket key reads it');
  t.not(new TicketIssuer(generateTicketKey().privateKeyPem).subjectOf(a), userId, 'another key reads nothing of it');
  t.is(issuer.subjectOf('short'), undefined);
  const ticket = issuer.issue({ v: 1, sub: a, exp: 9_999_999_999_999, aud: 'A'.repeat(22) });
  t.true(ticket.length <= 255, `a proxy ticket is ${ticket.length} bytes (SOCKS5 passwords hold 255)`);
  t.is(new TicketVerifier(key.publicKeyPem).verify(ticket, 1).sub, a);
});
