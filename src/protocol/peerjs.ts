/**
 * The PeerJS server protocol, as PeerJS 1.5.5 clients and the official peer@1.0.2 server speak it
 * (see ../shared/notes/peerjs-protocol.md). Frames are JSON text; the broker relays signaling
 * (OFFER, ANSWER, CANDIDATE, LEAVE) between client-chosen ids and never looks inside `payload`.
 */

export const PEERJS_TYPES = {
  open: 'OPEN',
  error: 'ERROR',
  idTaken: 'ID-TAKEN',
  heartbeat: 'HEARTBEAT',
  expire: 'EXPIRE',
  leave: 'LEAVE',
} as const;

/** The types relayed between clients. EXPIRE is the broker's own; anything else is not signaling. */
export const RELAYED_TYPES: ReadonlySet<string> = new Set(['OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE']);

/** Types queued for an id that is not connected (LEAVE for an absent id means nothing). */
export const QUEUED_TYPES: ReadonlySet<string> = new Set(['OFFER', 'ANSWER', 'CANDIDATE']);

/** ERROR texts: the first four are the official server's, word for word (clients show them). */
export const PEERJS_ERRORS = {
  missingParams: 'No id, token, or key supplied to websocket server',
  invalidKey: 'Invalid key provided',
  concurrentLimit: 'Server has reached its concurrent user limit',
  idTaken: 'ID is taken',
  // Ours: the official server has no such checks.
  invalidId: 'Invalid id: use letters and digits, joined by single spaces, dashes or underscores (at most 128 characters)',
  invalidToken: 'Invalid token: this broker requires a ticket (lantern-agent ticket --for peerjs)',
  notJson: 'Invalid message: frames must be JSON objects with a string type',
  tooLarge: 'Message too large (the limit is 64 KiB)',
} as const;

/** Ids as the PeerJS client itself validates them (alphanumeric runs joined by one space, - or _). */
export const PEER_ID_PATTERN = /^[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*$/;
export const MAX_PEER_ID_LENGTH = 128;

/** What the broker reads of a client frame; everything else in it is dropped. */
export interface ClientFrame {
  type: string;
  dst?: string;
  payload?: unknown;
}

/** Parses a client frame; undefined when it is not a JSON object with a string `type`. */
export function parseClientFrame(text: string): ClientFrame | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { type, dst, payload } = value as Record<string, unknown>;
  if (typeof type !== 'string' || type.length === 0 || type.length > 32) return undefined;
  if (dst !== undefined && dst !== null && typeof dst !== 'string') return undefined;
  return { type, ...(typeof dst === 'string' && dst !== '' ? { dst } : {}), ...(payload !== undefined ? { payload } : {}) };
}

/** A frame as relayed: only these four fields, `src` always the sender's registered id. */
export function relayFrame(type: string, src: string, dst: string, payload: unknown): string {
  return JSON.stringify(payload === undefined ? { type, src, dst } : { type, src, dst, payload });
}

export const errorFrame = (msg: string) => JSON.stringify({ type: PEERJS_TYPES.error, payload: { msg } });
