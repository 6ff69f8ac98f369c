import { randomUUID } from 'node:crypto';
import { setImmediate as tick } from 'node:timers/promises';
import test from 'ava';
import { LanternError } from '../../core/errors.js';
import { createLogger, silentLogger } from '../../core/logger.js';
import { generateTicketKey } from '../../crypto/tickets.js';
import type { PeerInfo, PeerRegistration } from '../../protocol/messages.js';
import { FakeClock } from '../../testing/fake-clock.js';
import { createGive, type GiveApi, type GiveEvent } from './index.js';

// The give role in process, on the fake clock, against a fake server's registry.

const TTL = 90_000;
const settle = async () => {
  for (let i = 0; i < 20; i++) await tick();
};

function fakeRegistry(clock: FakeClock) {
  const calls: string[] = [];
  let current: PeerInfo | undefined;
  let forget = false;
  const api: GiveApi = {
    registerPeer: async (r: PeerRegistration) => {
      calls.push(`register:${r.port}`);
      current = { peerId: randomUUID(), host: '203.0.113.7', port: r.port, protocols: r.protocols, identityKey: r.identityKey, state: 'candidate', registeredAt: clock.now(), expiresAt: clock.now() + TTL };
      return current;
    },
    heartbeatPeer: async () => {
      calls.push('heartbeat');
      if (forget || !current) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
      current = { ...current, expiresAt: clock.now() + TTL };
      return current;
    },
    unregisterPeer: async () => {
      calls.push('unregister');
      current = undefined;
      return { unregistered: true };
    },
  } as unknown as GiveApi;
  return { api, calls, forgetIt: () => (forget = true) };
}

const options = { host: '127.0.0.1', port: 0, allowPrivateDestinations: false, maxClients: 4, plaintext: true, register: true, advertiseTo: ['friend'], adLifetimeMs: 3600_000 };

test('registers at the listening port, heartbeats at a third of the time left, registers again when forgotten; pause, resume and stop', async (t) => {
  const clock = new FakeClock();
  const registry = fakeRegistry(clock);
  const events: GiveEvent[] = [];
  const ads: unknown[] = [];
  const give = createGive(
    {
      api: registry.api,
      clock,
      logger: silentLogger(),
      ticketKey: generateTicketKey().publicKeyPem,
      advertise: async (ad, userIds) => {
        ads.push(ad);
        return { sentTo: [...userIds], failed: [] };
      },
      onEvent: (e) => events.push(e),
    },
    options,
  );
  await give.start();
  const port = Number(new URL(give.url).port);
  t.deepEqual(registry.calls, [`register:${port}`]);
  t.deepEqual(events.map((e) => e.event), ['listening', 'registered', 'advertised']);
  // The ad names the address the server saw (no --public-addr), and expires after its lifetime.
  t.like(ads[0], { host: '203.0.113.7', port, plaintext: true, expiresAt: clock.now() + 3600_000 });

  clock.advance(TTL / 3 - 1);
  await settle();
  t.is(registry.calls.length, 1, 'no heartbeat before a third of the time left');
  clock.advance(1);
  await settle();
  t.deepEqual(registry.calls.slice(1), ['heartbeat']);

  registry.forgetIt();
  clock.advance(TTL / 3);
  await settle();
  t.deepEqual(registry.calls.slice(2), ['heartbeat', `register:${port}`], 'a registration the server forgot is made again');

  await give.setPaused(true);
  t.is(registry.calls.at(-1), 'unregister');
  t.true(give.status()['paused'] as boolean);
  t.is(give.registration, undefined);
  clock.advance(TTL);
  await settle();
  t.is(registry.calls.at(-1), 'unregister', 'no heartbeat while paused');
  await give.setPaused(false);
  t.is(registry.calls.at(-1), `register:${port}`);

  await give.stop();
  t.is(registry.calls.at(-1), 'unregister');
  t.is(clock.pendingTimers, 0);
});

test('a start that fails after the port opened leaves nothing running: out of the registry, port closed', async (t) => {
  const clock = new FakeClock();
  const registry = fakeRegistry(clock);
  const give = createGive(
    {
      api: registry.api,
      clock,
      logger: silentLogger(),
      ticketKey: generateTicketKey().publicKeyPem,
      advertise: async () => {
        throw new LanternError('LA_ERR_NOT_LOGGED_IN');
      },
    },
    { ...options, publicAddr: '198.51.100.9:4443' },
  );
  await t.throwsAsync(give.start(), { code: 'LA_ERR_NOT_LOGGED_IN' });
  t.deepEqual(registry.calls.map((c) => c.split(':')[0]), ['register', 'unregister']);
  await t.throwsAsync(fetch(give.url), undefined, 'the port is closed');
  t.is(give.ad().host, '198.51.100.9', '--public-addr names the address of ads');
});

test('while the server is away, heartbeats back off and the outage is logged once; the first beat that works resets them', async (t) => {
  const clock = new FakeClock();
  const registry = fakeRegistry(clock);
  let down = false;
  const heartbeat = registry.api.heartbeatPeer.bind(registry.api);
  registry.api.heartbeatPeer = async () => {
    if (!down) return heartbeat();
    registry.calls.push('heartbeat-failed');
    throw new LanternError('LA_ERR_SERVER_UNREACHABLE');
  };
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (line: string) => void lines.push(line) } });
  const give = createGive({ api: registry.api, clock, logger, ticketKey: generateTicketKey().publicKeyPem }, { ...options, advertiseTo: [] });
  await give.start();
  down = true;
  // Three minutes of outage, in half-second steps (the registration expired after 90 s).
  for (let i = 0; i < 360; i++) {
    clock.advance(500);
    await settle();
  }
  const failed = registry.calls.filter((c) => c === 'heartbeat-failed').length;
  t.log(`${failed} heartbeats in 3 minutes of outage`);
  t.true(failed >= 5 && failed <= 14, `${failed} attempts (one a second would be about 150)`);
  t.is(lines.filter((l) => /heartbeat failed/.test(l)).length, 1, 'the outage is logged once');
  down = false;
  for (let i = 0; i < 70 && registry.calls.at(-1) !== 'heartbeat'; i++) {
    clock.advance(500);
    await settle();
  }
  t.is(registry.calls.at(-1), 'heartbeat', 'back once the server is, within the longest backoff');
  t.is(lines.filter((l) => /heartbeat works again/.test(l)).length, 1);
  const before = registry.calls.length;
  clock.advance(TTL / 3 - 1000);
  await settle();
  t.is(registry.calls.length, before, 'and at a third of the time left again, not at the backoff');
  await give.stop();
});

test('a change the server did not take (the router moved the port, or WebRTC from now on) is registered at the next beat, not lost', async (t) => {
  const clock = new FakeClock();
  const registry = fakeRegistry(clock);
  const { PeerRegistrar } = await import('./peer-registration.js');
  const registrar = new PeerRegistrar({ api: registry.api, clock, logger: silentLogger() }, { port: 1, protocols: ['connect'], identityKey: 'k' });
  await registrar.start(4000);
  const register = registry.api.registerPeer.bind(registry.api);
  const sent: PeerRegistration[] = [];
  let down = true;
  registry.api.registerPeer = async (r) => {
    sent.push(r);
    if (down) throw new LanternError('LA_ERR_SERVER_UNREACHABLE');
    return register(r);
  };
  await registrar.amend({ ice: true });
  t.is(sent.length, 1, 'tried at once');
  down = false;
  clock.advance(TTL / 3);
  await settle();
  t.is(sent.length, 2, 'the next beat registers the change instead of a heartbeat');
  t.like(sent.at(-1), { ice: true, port: 4000 });
  t.is(registry.calls.filter((c) => c === 'heartbeat').length, 0);
  clock.advance(TTL / 3);
  await settle();
  t.is(registry.calls.at(-1), 'heartbeat', 'then heartbeats as before');
  await registrar.stop();
});
