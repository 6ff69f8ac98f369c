import type { IceServerOptions } from './ice-servers.js';
import type { BucketPolicy, QueueLimits } from '../../storage/server-store.js';
import { MAX_POLL_WAIT_SECONDS } from '../../protocol/version.js';
import { defaultClientAddressOptions, type ClientAddressOptions } from './client-address.js';

export interface RateLimits {
  /** Messages per (sender device -> recipient user). */
  pair: BucketPolicy;
  /** Payload bytes per recipient user. */
  recipientBytes: BucketPolicy;
  /** Login attempts per client address. */
  loginPerAddress: BucketPolicy;
  /** Login attempts per account name from one client network: an attacker hammering an account locks out only the network it hammers from. */
  loginPerAccount: BucketPolicy;
  /** Login attempts per account name from everywhere: a much higher ceiling. */
  loginPerAccountTotal: BucketPolicy;
  /** Prekey bundle fetches per requester device -> target device (fails closed). */
  prekeyFetch: BucketPolicy;
  /**
   * One-time prekeys handed out per target device, whoever asks: beyond it bundles come without
   * one-time keys (the signed and last-resort keys still make a session), so nobody drains them.
   */
  prekeyTarget: BucketPolicy;
  /** Reports of failing give peers per user (each only asks for a probe). */
  peerReport: BucketPolicy;
  /** Reachability checks (the server dials the caller's give peer) per user. */
  reachability: BucketPolicy;
}

export interface ServerOptions {
  openRegistration: boolean;
  /** Undelivered messages are deleted this long after they were sent. */
  retentionMs: number;
  /** How often the retention job runs. */
  expireIntervalMs: number;
  queue: QueueLimits;
  /** What one sender (user) may hold of a device's queue at most, as a fraction of --queue-max-*. */
  queueSenderShare: number;
  /** A device that has not polled this long is dormant: nothing more is queued for it, and what it has is deleted. */
  dormantAfterMs: number;
  rate: RateLimits;
  /** Lifetime of device certificates. */
  certificateLifetimeMs: number;
  /** Lifetime of LA1S sessions (never beyond the certificate's). */
  sessionLifetimeMs: number;
  /** LA1S sessions a device holds at most; opening another ends the one that expires first. */
  sessionsPerDevice: number;
  /** Lifetime of proxy tickets. */
  ticketLifetimeMs: number;
  /** A give peer registration lives this long after its last heartbeat. */
  peerTtlMs: number;
  /** A peer failing verification this long without a pass is paused until it registers again. */
  peerPauseAfterMs: number;
  /** A verified peer without a fresh pass for this long leaves the round robin (see currentState). */
  verdictTtlMs: number;
  /** Verifiers that must pass a peer to admit it, or fail it to evict it (each verifier's latest verdict counts). */
  verifierQuorum: number;
  /** Longest a poll is held (seconds, at most 60). */
  maxPollWaitSeconds: number;
  /** Other fronts of this server (scheme://host:port) that verifiers fetch canaries from, one at random each time. */
  canaryOrigins: string[];
  /** Who a request comes from behind trusted proxies, and the networks per-address limits count. */
  clientAddress: ClientAddressOptions;
  /** The STUN and TURN servers handed to clients (GET /v1/ice-servers). */
  ice: IceServerOptions;
}

const DAY = 24 * 3600_000;

export const defaultServerOptions: ServerOptions = {
  openRegistration: false,
  retentionMs: 30 * DAY,
  expireIntervalMs: 60_000,
  queue: { maxMessages: 10_000, maxBytes: 64 * 1024 * 1024 },
  queueSenderShare: 0.25,
  dormantAfterMs: 30 * DAY,
  rate: {
    pair: { capacity: 200, refillPerSecond: 20 },
    recipientBytes: { capacity: 32 * 1024 * 1024, refillPerSecond: 1024 * 1024 },
    loginPerAddress: { capacity: 20, refillPerSecond: 0.2 },
    loginPerAccount: { capacity: 10, refillPerSecond: 0.1 },
    loginPerAccountTotal: { capacity: 100, refillPerSecond: 1 },
    prekeyFetch: { capacity: 20, refillPerSecond: 0.5 },
    prekeyTarget: { capacity: 50, refillPerSecond: 0.05 },
    peerReport: { capacity: 10, refillPerSecond: 0.1 },
    reachability: { capacity: 5, refillPerSecond: 0.05 },
  },
  certificateLifetimeMs: 90 * DAY,
  sessionLifetimeMs: DAY,
  sessionsPerDevice: 8,
  ticketLifetimeMs: 3600_000,
  peerTtlMs: 90_000,
  peerPauseAfterMs: 600_000,
  // Three missed passes of `verify` at its default interval (15 s), and its probe timeout (5 s).
  verdictTtlMs: 50_000,
  verifierQuorum: 1,
  maxPollWaitSeconds: MAX_POLL_WAIT_SECONDS,
  clientAddress: defaultClientAddressOptions,
  canaryOrigins: [],
  ice: { stunUrls: [], turnUrls: [], turnTtlMs: 3600_000 },
};
