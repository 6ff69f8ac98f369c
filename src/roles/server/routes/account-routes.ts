import { randomUUID } from 'node:crypto';
import { acceptSession } from '../../../crypto/request-signature.js';
import { LanternError } from '../../../core/errors.js';
import { API } from '../../../protocol/api-paths.js';
import { LoginRequest, SessionRequest } from '../../../protocol/messages.js';
import { TicketRequest } from '../../../protocol/ticket.js';
import { parseMessage } from '../../../protocol/validate.js';
import { PROTOCOL_VERSION } from '../../../protocol/version.js';
import { parseJson, sendJson } from '../http-kit.js';
import { open, signed, type Route, type RouteContext } from './route.js';

/** Health, login, sessions, whoami and tickets. */
export function accountRoutes({ c, options, accounts, limit, clients }: RouteContext): Route[] {
  return [
    // The server's time lets a client measure its clock skew (`doctor`); signed requests outside AUTH_WINDOW_MS fail.
    open('GET', API.health, async ({ res }) => sendJson(res, 200, { ok: true, version: PROTOCOL_VERSION, time: c.clock.now() })),
    open('POST', API.login, async ({ req, res, body }) => {
      const login = parseMessage(LoginRequest, parseJson(body));
      // Per client network (a keyed hash of its prefix: no address is stored), behind trusted proxies
      // too; per account from that network, so that hammering an account from one network does not
      // lock its owner out elsewhere; and a much higher ceiling per account.
      const network = clients.limitKey(clients.of(req));
      await limit(`login-net:${network}`, options.rate.loginPerAddress);
      await limit(`login-name:${login.user}:${network}`, options.rate.loginPerAccount);
      await limit(`login-name:${login.user}`, options.rate.loginPerAccountTotal);
      sendJson(res, 200, await accounts.login(login, { ca: c.ca, options }));
    }),
    signed(
      'POST',
      API.session,
      async ({ res, body, auth }) => {
        const offer = parseMessage(SessionRequest, parseJson(body));
        const id = randomUUID();
        const { publicKey, key } = acceptSession(offer.publicKey, id);
        const expiresAt = Math.min(auth.certificateExpires, c.clock.now() + options.sessionLifetimeMs);
        // A device holds a few sessions at most: a flood of openings ends the oldest, not the server's memory.
        await c.store.putSession({ id, userId: auth.userId, deviceId: auth.deviceId, key, expiresAt }, options.sessionsPerDevice);
        sendJson(res, 200, { sessionId: id, publicKey, expiresAt });
      },
      'device',
    ),
    signed('GET', API.whoami, async ({ res, auth }) => {
      const account = await c.store.getAccountByUserId(auth.userId);
      sendJson(res, 200, { userId: auth.userId, deviceId: auth.deviceId, role: account?.role ?? 'user', certificateExpires: auth.certificateExpires });
    }),
    signed('POST', API.tickets, async ({ res, auth, body }) => {
      const { aud, peer } = body.length ? parseMessage(TicketRequest, parseJson(body)) : {};
      if (aud !== 'peerjs' && peer === undefined) {
        throw new LanternError('LA_ERR_INVALID_REQUEST', 'A proxy ticket is for one give peer: send {"peer": "<its fingerprint>"}');
      }
      const expiresAt = Math.min(c.clock.now() + options.ticketLifetimeMs, auth.certificateExpires);
      // A new pseudonym per ticket: no peer links two tickets, or a verifier's to its account.
      const sub = c.tickets.pseudonym(auth.userId);
      const claims = aud === 'peerjs' ? { v: 1 as const, sub, exp: expiresAt, aud } : { v: 1 as const, sub, exp: expiresAt, aud: peer! };
      sendJson(res, 200, { ticket: c.tickets.issue(claims), expiresAt });
    }),
    open('GET', API.ticketKey, async ({ res }) => sendJson(res, 200, { publicKey: c.tickets.publicKeyPem })),
  ];
}
