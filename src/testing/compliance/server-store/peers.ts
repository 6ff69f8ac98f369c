import { randomUUID } from 'node:crypto';
import { KEY_A, KEY_B, registerPeer, recordVerdict, type WithStore } from './helpers.js';

/** The peer registry (PeerRegistry) under the admission rules. */
export function peersCompliance(withStore: WithStore): void {
  withStore('give peers register once per device, heartbeat, expire and unregister', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const first = await registerPeer(s, { ...a, host: '203.0.113.5', port: 8443, protocols: ['connect', 'socks5'], identityKey: KEY_A }, 1000, 30_000);
    t.is(first.state, 'candidate');
    t.is(first.expiresAt, 31_000);
    const again = await registerPeer(s, { ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A, publicAddrHint: 'proxy.example:443' }, 2000, 30_000);
    t.is(again.peerId, first.peerId, 'a re-registration keeps the peer id');
    t.is(again.registeredAt, 1000);
    t.is(again.publicAddrHint, 'proxy.example:443');
    t.deepEqual((await s.listPeers(2000)).map((p) => p.peerId), [first.peerId]);
    t.is((await s.heartbeatPeer(a, 20_000, 30_000))?.expiresAt, 50_000);
    t.deepEqual(await s.listPeers(50_000), [], 'expired registrations are not listed');
    t.is(await s.heartbeatPeer(a, 50_000, 30_000), undefined, 'an expired registration must register again');
    const b = { userId: randomUUID(), deviceId: 2 };
    await registerPeer(s, { ...b, host: '198.51.100.7', port: 1080, protocols: ['socks5'], identityKey: KEY_B }, 60_000, 30_000);
    t.true(await s.unregisterPeer(b));
    t.false(await s.unregisterPeer(b));
    t.deepEqual(await s.listPeers(60_000), []);
  });

  withStore('verdicts admit, evict on one failure, pause after failing long, and registering again resumes', async (t, s) => {
    const a = { userId: randomUUID(), deviceId: 1 };
    const peer = await registerPeer(s, { ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 0, 3_600_000);
    const v = (ok: boolean, at: number) => ({ ok, status: ok ? 'ok' : 'refused', at });
    const pause = 600_000;
    t.is((await recordVerdict(s, peer.peerId, v(true, 1000), 1000, pause))?.state, 'verified');
    t.is((await recordVerdict(s, peer.peerId, v(true, 1000), 1000, pause))?.state, 'verified', 'the same verdict twice changes nothing');
    const failed = await recordVerdict(s, peer.peerId, v(false, 2000), 2000, pause);
    t.is(failed?.state, 'candidate', 'one failure takes it out of the round robin');
    t.is(failed?.failingSince, 2000);
    t.like(failed?.lastVerdict, { ok: false, status: 'refused' });
    t.is((await recordVerdict(s, peer.peerId, v(true, 3000), 3000, pause))?.state, 'verified', 're-admitted on the next pass');
    await recordVerdict(s, peer.peerId, v(false, 10_000), 10_000, pause);
    t.is((await recordVerdict(s, peer.peerId, v(false, 10_000 + pause - 1), 10_000, pause))?.state, 'candidate');
    t.is((await recordVerdict(s, peer.peerId, v(false, 10_000 + pause), 10_000, pause))?.state, 'paused', 'failing for the pause time pauses it');
    t.is((await recordVerdict(s, peer.peerId, v(true, 700_000), 700_000, pause))?.state, 'paused', 'a paused peer stays paused');
    const again = await registerPeer(s, { ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 800_000, 3_600_000);
    t.is(again.state, 'candidate', 'until it registers again');
    t.is(again.peerId, peer.peerId);
    t.is(await recordVerdict(s, randomUUID(), v(true, 1), 1, pause), undefined);
    // A re-registration at the same address keeps a verified peer verified; at another it must pass again.
    await recordVerdict(s, peer.peerId, v(true, 900_000), 900_000, pause);
    t.is((await registerPeer(s, { ...a, host: '203.0.113.5', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 900_001, 3_600_000)).state, 'verified');
    t.is((await registerPeer(s, { ...a, host: '203.0.113.6', port: 8443, protocols: ['connect'], identityKey: KEY_A }, 900_002, 3_600_000)).state, 'candidate');
    await recordVerdict(s, peer.peerId, v(true, 900_003), 900_003, pause);
    const rekeyed = await registerPeer(s, { ...a, host: '203.0.113.6', port: 8443, protocols: ['connect'], identityKey: KEY_B }, 900_004, 3_600_000);
    t.is(rekeyed.state, 'candidate', 'a new identity key at the same address must pass again');
    t.is(rekeyed.identityKey, KEY_B);
  });
}
