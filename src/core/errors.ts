/**
 * The one error catalogue. Every error the agent raises or a server answers carries a stable
 * `LA_ERR_*` code; callers branch on `code`, never on message text. Each entry gives the HTTP status
 * the server answers with and the exit code the CLI ends with. The README lists every entry (a test
 * keeps the two in sync).
 *
 * Exit code families: 1 runtime failure, 2 usage/config/invalid input, 3 server unreachable or
 * unavailable, 4 authentication/authorization, 5 refused by a server limit, 6 not found or conflict.
 */
export const errorCatalogue = {
  LA_ERR_INTERNAL: { status: 500, exit: 1, message: 'Internal error' },
  LA_ERR_USAGE: { status: 400, exit: 2, message: 'Invalid command-line usage' },
  LA_ERR_CONFIG: { status: 400, exit: 2, message: 'Invalid configuration' },
  LA_ERR_DEMO_FAILED: { status: 500, exit: 1, message: 'A step of `lantern-agent demo` failed' },
  LA_ERR_MALFORMED_JSON: { status: 400, exit: 2, message: 'Request body is not valid JSON' },
  LA_ERR_INVALID_REQUEST: { status: 400, exit: 2, message: 'Request does not match the protocol schema' },
  LA_ERR_PROTOCOL: { status: 400, exit: 2, message: 'Malformed or oversized protocol data' },
  LA_ERR_REQUEST_TIMEOUT: { status: 408, exit: 3, message: 'The request did not arrive in time' },
  LA_ERR_CLIENT_GONE: { status: 400, exit: 1, message: 'The client went away before its request was complete' },
  LA_ERR_BODY_TOO_LARGE: { status: 413, exit: 5, message: 'Request body is too large' },
  LA_ERR_PAYLOAD_TOO_LARGE: { status: 413, exit: 5, message: 'Message payload exceeds 96 KiB' },
  LA_ERR_VERSION_MISMATCH: { status: 426, exit: 2, message: 'Unsupported protocol version' },
  LA_ERR_NOT_FOUND: { status: 404, exit: 6, message: 'No such endpoint' },
  LA_ERR_METHOD_NOT_ALLOWED: { status: 405, exit: 2, message: 'Method not allowed on this endpoint' },
  LA_ERR_AUTH_REQUIRED: { status: 401, exit: 4, message: 'Request must be signed with a device credential' },
  LA_ERR_AUTH_MALFORMED: { status: 401, exit: 4, message: 'Authorization header is malformed' },
  LA_ERR_AUTH_BAD_SIGNATURE: { status: 401, exit: 4, message: 'Request signature does not verify' },
  LA_ERR_AUTH_UNKNOWN_CREDENTIAL: { status: 401, exit: 4, message: 'Credential was not issued by this server' },
  LA_ERR_AUTH_EXPIRED: { status: 401, exit: 4, message: 'Credential has expired; log in again' },
  LA_ERR_AUTH_SESSION_EXPIRED: { status: 401, exit: 4, message: 'Session is unknown or has ended; open a new one' },
  LA_ERR_AUTH_REVOKED: { status: 401, exit: 4, message: 'Credential has been revoked' },
  LA_ERR_AUTH_REPLAYED: { status: 401, exit: 4, message: 'Request was already seen (replay refused)' },
  LA_ERR_AUTH_CLOCK_SKEW: { status: 401, exit: 4, message: 'Request timestamp is outside the accepted window' },
  LA_ERR_LOGIN_FAILED: { status: 401, exit: 4, message: 'Unknown account or wrong password' },
  LA_ERR_REGISTRATION_CLOSED: { status: 403, exit: 4, message: 'This server does not allow self-registration' },
  LA_ERR_FORBIDDEN: { status: 403, exit: 4, message: 'Not allowed for this account' },
  LA_ERR_ACCOUNT_EXISTS: { status: 409, exit: 6, message: 'An account with that name already exists' },
  LA_ERR_ACCOUNT_NOT_FOUND: { status: 404, exit: 6, message: 'No account with that name' },
  LA_ERR_DEVICE_LIMIT: { status: 409, exit: 6, message: 'The account already has 127 devices' },
  LA_ERR_DEVICE_NOT_FOUND: { status: 404, exit: 6, message: 'No such device' },
  LA_ERR_INVALID_CSR: { status: 422, exit: 2, message: 'Certificate signing request is invalid' },
  LA_ERR_RECIPIENT_NOT_FOUND: { status: 404, exit: 6, message: 'No such recipient user or device' },
  LA_ERR_DEVICE_MISMATCH: { status: 409, exit: 6, message: "The message does not match the recipient's registered devices" },
  LA_ERR_STALE_DEVICES: { status: 410, exit: 6, message: "Some of the recipient's devices registered again" },
  LA_ERR_INVALID_KEY: { status: 422, exit: 2, message: 'Key material cannot be read' },
  LA_ERR_BAD_KEY_SIGNATURE: { status: 422, exit: 2, message: 'A key signature does not verify against the identity key' },
  LA_ERR_NO_KEYS: { status: 404, exit: 6, message: 'The device has not uploaded its keys' },
  LA_ERR_MESSAGE_ID_CONFLICT: { status: 409, exit: 6, message: 'Message id was already used for a different message' },
  LA_ERR_QUEUE_FULL: { status: 507, exit: 5, message: "Recipient's queue is full" },
  LA_ERR_QUEUE_SHARE_USED: { status: 429, exit: 5, message: "You hold your share of the recipient's queue; retry once it has received some" },
  LA_ERR_RECIPIENT_DORMANT: { status: 409, exit: 6, message: 'The recipient device has not polled for a long time; nothing more is kept for it' },
  LA_ERR_RATE_LIMITED: { status: 429, exit: 5, message: 'Rate limit exceeded; retry later' },
  LA_ERR_SHUTTING_DOWN: { status: 503, exit: 3, message: 'Server is shutting down' },
  LA_ERR_STORE_UNAVAILABLE: { status: 503, exit: 3, message: 'Storage is unavailable' },
  LA_ERR_STORE_FULL: { status: 507, exit: 1, message: 'Storage is full (disk full)' },
  LA_ERR_STORE_LOCKED: { status: 503, exit: 1, message: 'Data directory is locked by another process' },
  LA_ERR_STORE_CORRUPT: { status: 500, exit: 1, message: 'Stored data is unreadable' },
  LA_ERR_SERVER_UNREACHABLE: { status: 502, exit: 3, message: 'Cannot reach the server' },
  LA_ERR_SERVER_RESPONSE: { status: 502, exit: 3, message: 'Server answered with an unexpected response' },
  LA_ERR_NOT_LOGGED_IN: { status: 401, exit: 4, message: 'This home has no credential; run `lantern-agent login`' },
  LA_ERR_IDENTITY_CHANGED: { status: 409, exit: 4, message: "A contact's identity key changed; compare the safety number and trust it" },
  LA_ERR_DECRYPT_FAILED: { status: 422, exit: 1, message: 'A message could not be decrypted' },
  LA_ERR_DUPLICATE_MESSAGE: { status: 409, exit: 1, message: 'The message was already decrypted once' },
  LA_ERR_TICKET_INVALID: { status: 407, exit: 4, message: 'Proxy ticket is missing, malformed or not signed by the server' },
  LA_ERR_TICKET_EXPIRED: { status: 407, exit: 4, message: 'Proxy ticket has expired' },
  LA_ERR_DESTINATION_FORBIDDEN: { status: 403, exit: 4, message: 'Destination is in a private, loopback, link-local, multicast or other special-purpose range' },
  LA_ERR_DESTINATION_UNREACHABLE: { status: 502, exit: 3, message: 'Cannot connect to the destination' },
  LA_ERR_PROXY_BUSY: { status: 503, exit: 3, message: 'The proxy serves its maximum number of clients' },
  LA_ERR_PEER_IDENTITY_MISMATCH: { status: 502, exit: 3, message: "The give peer's TLS key is not its registered identity key" },
  LA_ERR_PEER_IDENTITY_TAKEN: { status: 409, exit: 6, message: 'Another live give peer registered this identity key' },
  LA_ERR_PEER_NOT_REGISTERED: { status: 404, exit: 6, message: 'This device has no (live) give peer registration' },
  LA_ERR_TLS_CONFIG: { status: 500, exit: 2, message: 'TLS certificate or key cannot be used' },
  LA_ERR_ADDRESS_IN_USE: { status: 500, exit: 2, message: 'The listen address is in use by another program' },
  LA_ERR_ADDRESS_UNAVAILABLE: { status: 500, exit: 2, message: 'The listen address cannot be used here (no such interface address, or a port below 1024 without privilege)' },
  LA_ERR_NOT_A_DIRECTORY: { status: 500, exit: 2, message: 'A path that must be a directory is a file or something else' },
  LA_ERR_PERMISSION_DENIED: { status: 500, exit: 2, message: 'This user may not read or write that path' },
  LA_ERR_PATH_UNUSABLE: { status: 500, exit: 2, message: 'A directory cannot be made or used at that path' },
} as const satisfies Record<string, { status: number; exit: number; message: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface LanternErrorOptions {
  cause?: unknown;
  /** Machine-readable extra data, sent in the error body (for instance `retryAfterMs`). */
  details?: Record<string, unknown>;
}

export class LanternError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly exitCode: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, options: LanternErrorOptions = {}) {
    const entry = errorCatalogue[code];
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LanternError';
    this.code = code;
    this.status = entry.status;
    this.exitCode = entry.exit;
    this.details = options.details;
  }

  static is(err: unknown, code?: ErrorCode): err is LanternError {
    return err instanceof LanternError && (code === undefined || err.code === code);
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(errorCatalogue, value);
}
