import { createHash, randomInt, randomUUID } from 'node:crypto';
import { LanternError } from '../../../core/errors.js';
import { CanaryMaker } from '../../../crypto/canary.js';
import { API } from '../../../protocol/api-paths.js';
import { PeerRegistration, PeerReport, PeerSelfQuery, ProbeRequestsQuery, VerdictRequest } from '../../../protocol/messages.js';
import { parseMessage } from '../../../protocol/validate.js';
import type { BucketPolicy, PeerRecord } from '../../../storage/server-store.js';
import { parseJson, sendJson } from '../http-kit.js';
import { connectPinned, connectStatus } from '../../../net/tunnel.js';
import { applyVerdict, currentState, nextPeerRecord } from '../peer-admission.js';
import type { ServerOptions } from '../options.js';
import { deviceOf, open, signed, type Route, type RouteContext } from './route.js';

/** A registration as its owner and verifiers see it (without the owner's ids). */
/**
 * A registration as clients see it: without its owner, in its current state (see currentState);
 * each verifier's verdict only for verifiers (a give peer learns nothing of who verifies it).
 */
const peerInfoAt = (now: number, rules: ServerOptions, forVerifier = false) => (record: PeerRecord) => {
  const { userId: _u, deviceId: _d, verdicts, ...info } = currentState(record, now, rules);
  return forVerifier && verdicts ? { ...info, verdicts } : info;
};

/** How long the server gives a give peer's address to answer a reachability check. */
const DIAL_BACK_MS = 3000;
/** How often one user's report of one peer counts. */
const ONE_A_MINUTE: BucketPolicy = { capacity: 1, refillPerSecond: 1 / 60 };

/** A TLS connection to a registered peer, pinned to its identity key: reachable, or why not. */
async function dialBack(peer: PeerRecord): Promise<{ reachable: boolean; status: string; ms?: number }> {
  if (peer.plaintext) return { reachable: false, status: 'plaintext' };
  const started = performance.now();
  try {
    const socket = await connectPinned({ host: peer.host, port: peer.port, identityKey: peer.identityKey, ...(peer.sniName ? { sniName: peer.sniName } : {}) }, DIAL_BACK_MS);
    // Closed gracefully: the handshake's last flight reaches the peer, which sees a client that hung
    // up; a peer that never closes its side is cut off a second later.
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
    return { reachable: true, status: 'ok', ms: Math.round((performance.now() - started) * 10) / 10 };
  } catch (err) {
    return { reachable: false, status: connectStatus(err) ?? 'tls-failed' };
  }
}

/** The peer registry: give peers register and heartbeat; get clients read the verified round robin. */
export function peerRoutes({ c, options, clients, probes, verdicts, limit }: RouteContext): Route[] {
  return [
    signed('POST', API.peers, async ({ req, res, body, auth }) => {
      const reg = parseMessage(PeerRegistration, parseJson(body));
      // The address is the connection's (or, behind a trusted proxy, the client's the proxy names),
      // never one a client writes: a registration cannot point elsewhere.
      const host = clients.of(req);
      // One live registration per identity key: nobody can register a relay to someone else's peer under its key.
      const now = c.clock.now();
      const taken = (await c.store.listPeers(now)).find((p) => p.identityKey === reg.identityKey && !(p.userId === auth.userId && p.deviceId === auth.deviceId));
      if (taken) throw new LanternError('LA_ERR_PEER_IDENTITY_TAKEN');
      const input = {
        ...deviceOf(auth),
        host,
        port: reg.port,
        protocols: reg.protocols,
        identityKey: reg.identityKey,
        ...(reg.plaintext ? { plaintext: true } : {}),
        ...(reg.sniName ? { sniName: reg.sniName } : {}),
        ...(reg.publicAddr ? { publicAddrHint: reg.publicAddr } : {}),
        // Reached over WebRTC: offers go to this device, as end-to-end encrypted messages.
        ...(reg.ice ? { ice: deviceOf(auth) } : {}),
        ...(reg.mapped ? { mapped: true } : {}),
      };
      const record = await c.store.registerPeer(deviceOf(auth), (prev) => nextPeerRecord(prev, input, now, options.peerTtlMs, randomUUID));
      c.logger.info({ peerId: record.peerId, client: host }, 'give peer registered');
      // A verifier probes a new (or changed) peer now, not at its next pass.
      if (record.state === 'candidate') await probes.signal(record.peerId).catch((err: unknown) => c.logger.warn({ err }, 'probe request not sent'));
      sendJson(res, 200, peerInfoAt(c.clock.now(), options)(record));
    }),
    signed('POST', API.peerHeartbeat, async ({ res, auth }) => {
      const record = await c.store.heartbeatPeer(deviceOf(auth), c.clock.now(), options.peerTtlMs);
      if (!record) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
      sendJson(res, 200, peerInfoAt(c.clock.now(), options)(record));
    }),
    // With ?wait=S&after=T: held until a verdict newer than T (server time) is recorded, or S seconds.
    signed('GET', API.peerSelf, async ({ res, url, auth }) => {
      const q = parseMessage(PeerSelfQuery, Object.fromEntries(url.searchParams));
      const find = async () => (await c.store.listPeers(c.clock.now())).find((p) => p.userId === auth.userId && p.deviceId === auth.deviceId);
      const readAt = c.clock.now();
      let mine = await find();
      if (!mine) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
      if (q.wait > 0 && q.after !== undefined && (mine.lastVerdict?.at ?? 0) <= q.after) {
        const gone = new AbortController();
        res.once('close', () => gone.abort());
        await verdicts.until(mine.peerId, readAt, Math.min(q.wait, options.maxPollWaitSeconds) * 1000, gone.signal);
        if (gone.signal.aborted) return;
        mine = await find();
        if (!mine) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
      }
      sendJson(res, 200, peerInfoAt(c.clock.now(), options)(mine));
    }),
    signed('DELETE', API.peers, async ({ res, auth }) => sendJson(res, 200, { unregistered: await c.store.unregisterPeer(deviceOf(auth)) })),
    // The server dials the caller's registered address, as a get client would, and says what it found.
    signed('POST', API.peerReachability, async ({ res, auth }) => {
      await limit(`reachability:${auth.userId}`, options.rate.reachability);
      const mine = (await c.store.listPeers(c.clock.now())).find((p) => p.userId === auth.userId && p.deviceId === auth.deviceId);
      if (!mine) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED');
      sendJson(res, 200, { host: mine.host, port: mine.port, ...(await dialBack(mine)), at: c.clock.now() });
    }),
    signed('POST', API.peerReport, async ({ res, body, auth }) => {
      const report = parseMessage(PeerReport, parseJson(body));
      await limit(`peer-report:${auth.userId}`, options.rate.peerReport);
      const now = c.clock.now();
      const peer = (await c.store.listPeers(now)).find((p) => p.identityKey === report.identityKey && p.state !== 'paused');
      // One report per user and peer a minute counts (a bucket of one, refilled in a minute); it only
      // asks for a probe (a censor reporting honest peers gets them probed, never evicted).
      const fresh = peer !== undefined && (await c.store.takeTokens(`peer-report:${peer.peerId}:${auth.userId}`, 1, ONE_A_MINUTE, now)).ok;
      if (fresh) {
        c.logger.info({ peerId: peer.peerId, status: report.status }, 'give peer reported by a user; probing it');
        await probes.signal(peer.peerId);
      }
      sendJson(res, 202, { accepted: fresh });
    }),
    signed('GET', API.roundRobin, async ({ res }) => {
      // Get clients only ever receive verified peers.
      const now = c.clock.now();
      const verified = (await c.store.listPeers(now)).filter((p) => currentState(p, now, options).state === 'verified');
      sendJson(res, 200, { peers: verified.map(({ host, port, protocols, identityKey, sniName, ice }) => ({ host, port, protocols, identityKey, ...(sniName ? { sniName } : {}), ...(ice ? { ice } : {}) })) });
    }),
  ];
}

/** Verification: canaries to fetch through peers, the candidate list and verdicts (verifier accounts). */
export function verificationRoutes({ c, options, requireVerifier, probes, verdicts }: RouteContext): Route[] {
  return [
    signed('GET', API.probeRequests, async ({ res, url, auth }) => {
      await requireVerifier(auth);
      const q = parseMessage(ProbeRequestsQuery, Object.fromEntries(url.searchParams));
      const gone = new AbortController();
      res.once('close', () => gone.abort());
      const asked = await probes.since(q.since, Math.min(q.wait, options.maxPollWaitSeconds) * 1000, gone.signal);
      if (gone.signal.aborted) return;
      const wanted = new Set(asked.peerIds);
      const peers = (await c.store.listPeers(asked.now)).filter((p) => wanted.has(p.peerId) && p.state !== 'paused');
      sendJson(res, 200, { now: asked.now, peers: peers.map(peerInfoAt(asked.now, options, true)) });
    }),
    signed('POST', API.canary, async ({ res, auth }) => {
      await requireVerifier(auth);
      const nonce = CanaryMaker.newNonce();
      const content = c.canary.content(nonce);
      const origins = options.canaryOrigins;
      const origin = origins.length ? origins[randomInt(origins.length)] : undefined;
      sendJson(res, 200, { nonce, path: `/v1/canary/${nonce}`, length: content.length, sha256: createHash('sha256').update(content).digest('hex'), ...(origin ? { origin } : {}) });
    }),
    open('GET', API.canaryContent, async ({ res, params }) => {
      if (!/^[0-9a-f]{32}$/.test(params['nonce']!)) throw new LanternError('LA_ERR_NOT_FOUND');
      const content = c.canary.content(params['nonce']!);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': content.length, 'cache-control': 'no-store' });
      res.end(content);
    }),
    signed('GET', API.peers, async ({ res, auth }) => {
      await requireVerifier(auth);
      const now = c.clock.now();
      sendJson(res, 200, { peers: (await c.store.listPeers(now)).map(peerInfoAt(now, options, true)) });
    }),
    signed('POST', API.verdict, async ({ res, params, body, auth }) => {
      await requireVerifier(auth);
      const verdict = parseMessage(VerdictRequest, parseJson(body));
      const now = c.clock.now();
      const record = await c.store.recordVerdict(params['peerId']!, now, (p) => applyVerdict(p, `${auth.userId}:${auth.deviceId}`, { ...verdict, at: now }, options));
      if (!record) throw new LanternError('LA_ERR_PEER_NOT_REGISTERED', 'No live peer with that id');
      c.metrics?.verdicts.inc({ result: verdict.ok ? 'pass' : 'fail' });
      c.onVerdict?.(record);
      // The give peer waiting on GET /v1/peers/self hears of it now, not at its next heartbeat.
      await verdicts.signal(record.peerId).catch((err: unknown) => c.logger.warn({ err }, 'verdict signal not sent'));
      sendJson(res, 200, peerInfoAt(c.clock.now(), options)(record));
    }),
  ];
}
