/**
 * Wire messages of protocol v1 (see version.ts). One schema per message; the server validates every
 * inbound body against its schema before a handler sees it, and clients validate every answer.
 * Binary data travels as standard base64.
 */
import { z } from 'zod';
import { MAX_DEVICE_ID, MAX_PAYLOAD_BYTES, MAX_POLL_BATCH, MAX_POLL_WAIT_SECONDS, MIN_DEVICE_ID } from './version.js';
import { PAYLOAD_TOO_LARGE } from './validate.js';

export const UserId = z.uuidv4();
export const DeviceId = z.int().min(MIN_DEVICE_ID).max(MAX_DEVICE_ID);
export const AccountName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._@-]*$/, 'letters, digits and . _ @ - only');
export const Password = z.string().min(8, 'at least 8 characters').max(1024);
export const Role = z.enum(['user', 'verifier']);
export type Role = z.infer<typeof Role>;
export const MessageId = z.uuid();
/** Signal registration id: 14-bit, non-zero, as libsignal generates them. */
export const RegistrationId = z.int().min(1).max(16380);

const Pem = (label: string) =>
  z.string().max(16 * 1024).refine((s) => s.includes(`-----BEGIN ${label}-----`), `must be a PEM ${label}`);

/** Address of one device. */
export const Address = z.strictObject({ userId: UserId, deviceId: DeviceId });
export type Address = z.infer<typeof Address>;

/**
 * POST /v1/login — an account proves its password and sends a CSR for a key made on the device.
 * `register` creates the account first (only with --open-registration). `deviceId` asks to renew
 * the credential of an existing device of this account instead of adding a new device.
 */
export const LoginRequest = z.strictObject({
  user: AccountName,
  // Any length: a password too short to be one is simply wrong (LA_ERR_LOGIN_FAILED), not a schema
  // error that would tell a guesser how passwords are made. Accounts are still made with `Password`.
  password: z.string().min(1).max(1024),
  csr: Pem('CERTIFICATE REQUEST'),
  register: z.boolean().optional(),
  deviceId: DeviceId.optional(),
});
export type LoginRequest = z.infer<typeof LoginRequest>;

/** Answer to a login: the anonymized identity and the credential. `expiresAt` is in ms. */
export const LoginResponse = z.strictObject({
  userId: UserId,
  deviceId: DeviceId,
  role: Role,
  certificate: Pem('CERTIFICATE'),
  caCertificate: Pem('CERTIFICATE'),
  expiresAt: z.int(),
});
export type LoginResponse = z.infer<typeof LoginResponse>;

/** Standard base64 of at most MAX_PAYLOAD_BYTES decoded bytes. */
export const Payload = z
  .base64()
  .max(Math.ceil(MAX_PAYLOAD_BYTES / 3) * 4, PAYLOAD_TOO_LARGE);

/**
 * POST /v1/messages — store-and-forward send. `id` is chosen by the client; resending the same id
 * with the same content is a no-op that answers the same. Without `deviceId` the payload goes to
 * every current device of `to`. `type` is opaque to the server (0 = plaintext, used by --raw).
 */
export const PlainSendRequest = z.strictObject({
  id: MessageId,
  to: UserId,
  deviceId: DeviceId.optional(),
  type: z.int().min(0).max(255),
  payload: Payload,
});
export type PlainSendRequest = z.infer<typeof PlainSendRequest>;

/** One device's ciphertext in a per-device send, with the registration id the sender encrypted for. */
export const DeviceMessage = z.strictObject({
  deviceId: DeviceId,
  registrationId: RegistrationId,
  type: z.int().min(0).max(255),
  payload: Payload,
});
export type DeviceMessage = z.infer<typeof DeviceMessage>;

/**
 * The end-to-end encrypted form of POST /v1/messages: one ciphertext per registered device of
 * `to` (when sending to oneself, every device but the sender), all or nothing. A missing or
 * unknown device gets 409 LA_ERR_DEVICE_MISMATCH with `{missingDevices, extraDevices}`; a
 * registration id that changed gets 410 LA_ERR_STALE_DEVICES with `{staleDevices}`; then nothing
 * is stored.
 */
export const DeviceSendRequest = z.strictObject({
  id: MessageId,
  to: UserId,
  messages: z.array(DeviceMessage).min(1).max(127),
});
export type DeviceSendRequest = z.infer<typeof DeviceSendRequest>;

export const SendRequest = z.union([PlainSendRequest, DeviceSendRequest]);
export type SendRequest = z.infer<typeof SendRequest>;

/**
 * A recipient device a send did not reach: its queue is `full`, the sender holds its `share` of it
 * already (a quarter by default), or it is `dormant` (has not polled for a long time).
 */
export const SkippedDevice = z.strictObject({ deviceId: DeviceId, reason: z.enum(['full', 'share', 'dormant']) });
export type SkippedDevice = z.infer<typeof SkippedDevice>;

/**
 * Answer to a send: the devices the message was queued for, and those skipped (never all of them:
 * then the send fails with LA_ERR_QUEUE_SHARE_USED, LA_ERR_QUEUE_FULL or LA_ERR_RECIPIENT_DORMANT).
 */
export const SendResponse = z.strictObject({ devices: z.array(DeviceId), skipped: z.array(SkippedDevice).optional() });
export type SendResponse = z.infer<typeof SendResponse>;

/** Most messages one batch send carries (the body limit applies too). */
export const MAX_SEND_BATCH = 100;

/**
 * POST /v1/messages/batch — several sends in one request (an outbox flushed after being offline,
 * an availability ad to many contacts). Each message succeeds or fails on its own; the answer lists
 * one result per message, in order.
 */
export const SendBatchRequest = z.strictObject({ messages: z.array(SendRequest).min(1).max(MAX_SEND_BATCH) });
export type SendBatchRequest = z.infer<typeof SendBatchRequest>;
export const SendResult = z.union([
  z.strictObject({ id: MessageId, devices: z.array(DeviceId), skipped: z.array(SkippedDevice).optional() }),
  z.strictObject({ id: MessageId, error: z.strictObject({ code: z.string(), message: z.string() }) }),
]);
export type SendResult = z.infer<typeof SendResult>;
export const SendBatchResponse = z.strictObject({ results: z.array(SendResult) });
export type SendBatchResponse = z.infer<typeof SendBatchResponse>;

/** One queued message as delivered. `sentAt` is the server's time of acceptance (ms). */
export const DeliveredMessage = z.strictObject({
  id: z.string().min(1).max(64),
  from: Address,
  sentAt: z.int(),
  type: z.int().min(0).max(255),
  payload: z.base64(),
});
export type DeliveredMessage = z.infer<typeof DeliveredMessage>;

/**
 * GET /v1/messages?wait=S&limit=N — long-poll. 200 with the oldest queued messages at once when
 * there are any (`more` says whether others wait behind them), else held up to `wait` seconds and
 * answered 204. A newer poll of the same device answers an older one with 204.
 */
export const PollResponse = z.strictObject({
  messages: z.array(DeliveredMessage).max(MAX_POLL_BATCH),
  more: z.boolean(),
});
export type PollResponse = z.infer<typeof PollResponse>;

export const PollQuery = z.strictObject({
  wait: z.coerce.number().min(0).max(MAX_POLL_WAIT_SECONDS).default(0),
  limit: z.coerce.number().int().min(1).max(MAX_POLL_BATCH).default(100),
  /**
   * Comma-separated ids of messages the client has stored: acked before the poll, so a receiving
   * client needs one request per batch instead of two (acks are idempotent, so a retried GET is safe).
   */
  ack: z
    .string()
    .max(MAX_POLL_BATCH * 65)
    .transform((v) => v.split(',').filter(Boolean))
    .pipe(z.array(z.string().min(1).max(64)).max(MAX_POLL_BATCH))
    .optional(),
});

/** POST /v1/messages/ack — delete delivered messages from the caller's own queue. */
export const AckRequest = z.strictObject({ ids: z.array(z.string().min(1).max(64)).min(1).max(MAX_POLL_BATCH) });
export type AckRequest = z.infer<typeof AckRequest>;
export const AckResponse = z.strictObject({ acked: z.int().min(0) });
export type AckResponse = z.infer<typeof AckResponse>;

/** GET /v1/whoami — the identity behind the credential that signed the request. */
/** GET /v1/health: up, its protocol version, and its clock (ms). */
export const HealthResponse = z.object({ ok: z.boolean(), version: z.int(), time: z.int().optional() });

export const WhoamiResponse = z.strictObject({
  userId: UserId,
  deviceId: DeviceId,
  role: Role,
  certificateExpires: z.int(),
});

/** Every error answer. */
export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

/**
 * Control socket (a Unix socket in the server's data dir, mode 0600): lets `account` commands act
 * through a running server, which holds the LevelDB lock. One JSON request per connection.
 */
export const ControlRequest = z.discriminatedUnion('op', [
  z.strictObject({ op: z.literal('account.add'), name: AccountName, role: Role, password: Password }),
  z.strictObject({ op: z.literal('account.revoke'), name: AccountName, deviceId: DeviceId.optional() }),
]);
export type ControlRequest = z.infer<typeof ControlRequest>;
/** Every answer on a local control socket. */
export const ControlAnswer = z.union([
  z.strictObject({ ok: z.literal(true), result: z.record(z.string(), z.unknown()) }),
  ErrorBody,
]);

/** Requests to a running give peer's control socket (HOME/give.sock). */
export const GiveControlRequest = z.strictObject({ op: z.enum(['status', 'pause', 'resume']) });
export type GiveControlRequest = z.infer<typeof GiveControlRequest>;

const X25519PublicKey = z.base64().length(44);

/** POST /v1/session (LA1-signed) — opens an LA1S session; see request-auth.ts. */
export const SessionRequest = z.strictObject({ publicKey: X25519PublicKey });
export type SessionRequest = z.infer<typeof SessionRequest>;
export const SessionResponse = z.strictObject({ sessionId: z.uuid(), publicKey: X25519PublicKey, expiresAt: z.int() });
export type SessionResponse = z.infer<typeof SessionResponse>;

// ---- Signal key distribution (the server stores key material as opaque bytes; see
// ../shared/notes/libsignal.md §4.2). Keys are libsignal serializations in standard base64.

const b64Bytes = (bytes: number) => z.base64().length(Math.ceil(bytes / 3) * 4);
export const KeyId = z.int().min(0).max(2 ** 31 - 1);
/** libsignal PublicKey.serialize(): 33 bytes. */
export const EcPublicKey = b64Bytes(33);
/** libsignal KEMPublicKey.serialize() (Kyber1024): 1569 bytes. */
export const KyberPublicKey = b64Bytes(1569);
/** XEdDSA signature by the identity key: 64 bytes. */
export const KeySignature = b64Bytes(64);

export const PreKeyUpload = z.strictObject({ keyId: KeyId, publicKey: EcPublicKey });
export type PreKeyUpload = z.infer<typeof PreKeyUpload>;
export const SignedPreKeyUpload = z.strictObject({ keyId: KeyId, publicKey: EcPublicKey, signature: KeySignature });
export type SignedPreKeyUpload = z.infer<typeof SignedPreKeyUpload>;
export const KyberPreKeyUpload = z.strictObject({ keyId: KeyId, publicKey: KyberPublicKey, signature: KeySignature });
export type KyberPreKeyUpload = z.infer<typeof KyberPreKeyUpload>;

/**
 * PUT /v1/keys — the authenticated device's own keys (the device comes from the credential, never
 * from the body). A new signed key replaces the old one; a non-empty one-time list replaces the
 * stored one. Every signature is checked against the identity key (422 when one does not verify).
 * A different identity key or registration id is a re-registration: the old one-time keys go.
 */
export const KeysUpload = z.strictObject({
  identityKey: EcPublicKey,
  registrationId: RegistrationId,
  signedPreKey: SignedPreKeyUpload,
  kyberLastResort: KyberPreKeyUpload,
  preKeys: z.array(PreKeyUpload).max(200).optional(),
  kyberPreKeys: z.array(KyberPreKeyUpload).max(100).optional(),
});
export type KeysUpload = z.infer<typeof KeysUpload>;

/** GET /v1/keys/count — how many one-time keys the caller's device has left. */
export const KeyCounts = z.strictObject({ preKeys: z.int().min(0), kyberPreKeys: z.int().min(0) });
export type KeyCounts = z.infer<typeof KeyCounts>;

/** One device's bundle; `preKey` is absent when none is left, `kyberPreKey` may be the last-resort key. */
export const DeviceBundle = z.strictObject({
  deviceId: DeviceId,
  registrationId: RegistrationId,
  identityKey: EcPublicKey,
  signedPreKey: SignedPreKeyUpload,
  kyberPreKey: KyberPreKeyUpload,
  preKey: PreKeyUpload.optional(),
});
export type DeviceBundle = z.infer<typeof DeviceBundle>;

/**
 * GET /v1/keys/<userId>[/<deviceId>] — one bundle per registered device (or the one asked for),
 * each popping one one-time EC prekey and one one-time Kyber prekey: no key is served twice.
 */
export const BundlesResponse = z.strictObject({ userId: UserId, devices: z.array(DeviceBundle) });
export type BundlesResponse = z.infer<typeof BundlesResponse>;

// ---- Give peer registry (see LEP 007: peers register, verifiers admit them to the round robin).

export const ProxyProtocol = z.enum(['connect', 'http', 'socks5']);
export type ProxyProtocol = z.infer<typeof ProxyProtocol>;

/**
 * POST /v1/peers — a give peer registers (or re-registers) the proxy of the signing device. The
 * server takes the address from the connection, never from the body or a header: `port` is where
 * the proxy is reached (its listening port, or the one a router forwards to it) and `publicAddr`
 * (HOST:PORT) only a hint, recorded as such. `identityKey` is the peer's identity key (P-256,
 * SubjectPublicKeyInfo DER, base64url), which is also the key of its TLS certificate: get clients
 * and verifiers pin it. `plaintext`: a peer started with `give --plaintext` (local tests only; never
 * admitted to the round robin).
 */
export const PeerIdentityKey = z.string().regex(/^[A-Za-z0-9_-]{122}$/, 'a P-256 public key (SPKI DER, base64url)');
/** The TLS server name clients send to a peer that has one (`give --sni-name`); none for an address. */
export const SniName = z.string().regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i, 'a DNS name');
export const PeerRegistration = z.strictObject({
  port: z.int().min(1).max(65535),
  publicAddr: z.string().max(300).optional(),
  protocols: z.array(ProxyProtocol).min(1).max(3),
  identityKey: PeerIdentityKey,
  plaintext: z.boolean().optional(),
  sniName: SniName.optional(),
  /**
   * Not reachable at its address (behind a NAT no port could be mapped on): clients reach it over
   * WebRTC, signaled by end-to-end encrypted messages to the registering device.
   */
  ice: z.boolean().optional(),
  /** Its port is forwarded by a mapping on the home router (UPnP-IGD, PCP, NAT-PMP): shown to operators. */
  mapped: z.boolean().optional(),
});
export type PeerRegistration = z.infer<typeof PeerRegistration>;

export const PeerState = z.enum(['candidate', 'verified', 'paused']);
export type PeerState = z.infer<typeof PeerState>;

/** A verifier's finding about one peer (see LEP 007). `status` says what failed, e.g. `refused`. */
export const VerdictRequest = z.strictObject({
  ok: z.boolean(),
  status: z.string().min(1).max(64),
  latencyMs: z.number().min(0).optional(),
  throughputMbps: z.number().min(0).optional(),
  /** How the probe reached the peer: TLS to its address, or WebRTC between the NATs or through TURN. */
  path: z.enum(['direct', 'ice', 'turn']).optional(),
});
export type VerdictRequest = z.infer<typeof VerdictRequest>;

export const Verdict = VerdictRequest.extend({ at: z.int() });
export type Verdict = z.infer<typeof Verdict>;

/** A registered peer as the server keeps it. */
export const PeerInfo = z.strictObject({
  peerId: z.uuid(),
  host: z.string(),
  port: z.int(),
  protocols: z.array(ProxyProtocol),
  publicAddrHint: z.string().optional(),
  identityKey: PeerIdentityKey,
  plaintext: z.boolean().optional(),
  sniName: SniName.optional(),
  /** A peer reached over WebRTC: the device its ICE offers go to (end-to-end encrypted). */
  ice: Address.optional(),
  /** Its port is forwarded by a mapping on its home router. */
  mapped: z.boolean().optional(),
  state: PeerState,
  registeredAt: z.int(),
  expiresAt: z.int(),
  lastVerdict: Verdict.optional(),
  /** Each verifier's latest verdict, by verifier (shown to verifiers only). */
  verdicts: z.record(z.string().max(80), Verdict).optional(),
  /** Since when it has failed without a pass in between. */
  failingSince: z.int().optional(),
});
export type PeerInfo = z.infer<typeof PeerInfo>;

/** GET /v1/peers (verifiers only): every live registration with its state and last verdict. */
export const PeersResponse = z.strictObject({ peers: z.array(PeerInfo) });

/**
 * GET /v1/peers/probe-requests?wait=S[&since=T] (verifiers only): held up to S s until a peer is to
 * be probed now (it registered, or users reported it), then those asked for since T (server time;
 * pass back `now`).
 */
export const ProbeRequestsQuery = z.strictObject({
  wait: z.coerce.number().min(0).max(MAX_POLL_WAIT_SECONDS).default(0),
  since: z.coerce.number().int().min(0).optional(),
});
/**
 * POST /v1/peers/reachability — the server dials the caller's registered address (TLS pinned to its
 * identity key) and says whether the world can reach it: `status` is `ok` or why not (`refused`,
 * `timeout`, `unreachable`, `tls-failed`, `identity-mismatch`, `plaintext`).
 */
export const ReachabilityResponse = z.strictObject({
  host: z.string(),
  port: z.int(),
  reachable: z.boolean(),
  status: z.string().min(1).max(64),
  ms: z.number().optional(),
  at: z.int(),
});
export type ReachabilityResponse = z.infer<typeof ReachabilityResponse>;

/**
 * GET /v1/ice-servers — the STUN and TURN servers give and get use to traverse NAT, as
 * RTCIceServer entries; a TURN entry carries a credential for this user valid until `expiresAt`.
 */
export const IceServersResponse = z.strictObject({
  iceServers: z
    .array(z.strictObject({ urls: z.array(z.string().regex(/^(stun|stuns|turn|turns):/).max(300)).min(1).max(8), username: z.string().max(200).optional(), credential: z.string().max(200).optional() }))
    .max(8),
  expiresAt: z.int(),
});
export type IceServersResponse = z.infer<typeof IceServersResponse>;

/** GET /v1/peers/self?wait=S&after=T — a give peer waiting (up to S s) for a verdict newer than T (server ms). */
export const PeerSelfQuery = z.strictObject({
  wait: z.coerce.number().min(0).max(MAX_POLL_WAIT_SECONDS).default(0),
  after: z.coerce.number().int().min(0).optional(),
});
export const ProbeRequestsResponse = z.strictObject({ now: z.int(), peers: z.array(PeerInfo) });
export type ProbeRequestsResponse = z.infer<typeof ProbeRequestsResponse>;

/**
 * POST /v1/peers/report — a get client could not tunnel through this give peer while another one
 * worked. Reports only make a verifier probe the peer at once; they never evict it themselves.
 */
export const PeerReport = z.strictObject({ identityKey: PeerIdentityKey, status: z.string().min(1).max(64) });
export type PeerReport = z.infer<typeof PeerReport>;
export const PeerReportResponse = z.strictObject({ accepted: z.boolean() });

/** GET /v1/peers/round-robin — the verified give peers (what get clients may use), with the keys to pin. */
export const RoundRobinPeer = z.strictObject({
  host: z.string(),
  port: z.int(),
  protocols: z.array(ProxyProtocol),
  identityKey: PeerIdentityKey,
  sniName: SniName.optional(),
  /** Reached over WebRTC: the device to send ICE offers to (the address above is not reachable). */
  ice: Address.optional(),
});
export type RoundRobinPeer = z.infer<typeof RoundRobinPeer>;
export const RoundRobinResponse = z.strictObject({ peers: z.array(RoundRobinPeer) });

/** DELETE /v1/peers answer. */
export const UnregisterPeerResponse = z.strictObject({ unregistered: z.boolean() });

// ---- Inside end-to-end encrypted messages (the server never sees these).

/** A give peer's availability advertisement (kaleidoscope), sent to the owner's contacts. */
export const Advertisement = z.strictObject({
  host: z.string().min(1).max(255),
  port: z.int().min(1).max(65535),
  protocols: z.array(ProxyProtocol).min(1).max(3),
  /** The key the peer's TLS certificate carries (pinned by the contact's get). */
  identityKey: PeerIdentityKey,
  /** A `give --plaintext` peer (local tests only). */
  plaintext: z.boolean().optional(),
  sniName: SniName.optional(),
  /** Reached over WebRTC (behind a NAT): the device its offers go to. */
  ice: Address.optional(),
  expiresAt: z.int(),
});
export type Advertisement = z.infer<typeof Advertisement>;

/** Names one ICE session between a get client (or verifier) and a give peer: 128 random bits. */
const IceSession = z.string().regex(/^[A-Za-z0-9_-]{22}$/);
/** A session description with every candidate in it (no trickle): a few KiB at most. */
const Sdp = z.string().min(1).max(16 * 1024);

/**
 * ICE signaling between a client and a give peer reached over WebRTC, inside end-to-end encrypted
 * messages (the candidates name home addresses; the server never sees them): the client's offer
 * with the ticket for that peer, and the peer's answer with its DTLS fingerprint signed by its
 * identity key for this session, or why it refused.
 */
export const IceSignal = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('offer'), session: IceSession, sdp: Sdp, ticket: z.string().min(1).max(4096) }),
  z.strictObject({ kind: z.literal('answer'), session: IceSession, sdp: Sdp, signature: z.string().min(1).max(200) }),
  z.strictObject({ kind: z.literal('refused'), session: IceSession, reason: z.enum(['ticket', 'busy', 'paused', 'failed']) }),
]);
export type IceSignal = z.infer<typeof IceSignal>;

/** The plaintext of every encrypted message: a text, an advertisement, or ICE signaling. */
export const Envelope = z.union([
  z.strictObject({ v: z.literal(1), text: z.string().max(64 * 1024) }),
  z.strictObject({ v: z.literal(1), ad: Advertisement }),
  z.strictObject({ v: z.literal(1), ice: IceSignal }),
]);
export type Envelope = z.infer<typeof Envelope>;

/**
 * POST /v1/canary (verifiers only) — a fresh canary: content the server serves at `path` (GET,
 * public, so it can be fetched through a give peer) whose length and sha256 only the server and the
 * verifier know in advance (HMAC of the nonce with a server secret), so a peer cannot fake it.
 */
export const CanaryResponse = z.strictObject({
  nonce: z.string().regex(/^[0-9a-f]{32}$/),
  path: z.string(),
  length: z.int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /**
   * Where to fetch it (`scheme://host:port`): one of the server's other fronts (`server
   * --canary-origin`, e.g. a CDN hostname), so that a probe's destination is not the server's own
   * address. Absent: the server itself.
   */
  origin: z.url({ protocol: /^https?$/ }).optional(),
});
export type CanaryResponse = z.infer<typeof CanaryResponse>;
