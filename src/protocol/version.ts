/** Wire protocol v1 of the server HTTP API. Every request carries `X-Lantern-Version: 1`. */
export const PROTOCOL_VERSION = 1;
export const VERSION_HEADER = 'x-lantern-version';
/** Largest opaque message payload the server stores (decoded bytes). */
export const MAX_PAYLOAD_BYTES = 96 * 1024;
/** Longest a long-poll GET may be held, below common CDN timeouts. */
export const MAX_POLL_WAIT_SECONDS = 60;
/** Most messages one poll answer carries. */
export const MAX_POLL_BATCH = 500;
/**
 * Poll answers carry `Lantern-Keys: low` while the device has fewer one-time keys than this left
 * (a sign to upload more: others' fetches, or a drain, used them up).
 */
export const KEYS_HEADER = 'lantern-keys';
export const KEYS_LOW_WATER = { preKeys: 20, kyberPreKeys: 5 };
/** Device ids libsignal accepts in a ProtocolAddress. */
export const MIN_DEVICE_ID = 1;
export const MAX_DEVICE_ID = 127;
