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
  /** The payload's JSON text exactly as the client wrote it (relayed without being re-serialized). */
  payloadText?: string;
}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

function skipSpace(text: string, i: number): number {
  while (isSpace(text.charCodeAt(i))) i++;
  return i;
}

/**
 * The index after the string that opens at `i` (its closing quote is one not escaped). The scans
 * stop at the end of the text whatever it holds, though JSON.parse has accepted it by then.
 */
function stringEnd(text: string, i: number): number {
  for (;;) {
    i = text.indexOf('"', i + 1);
    if (i < 0) return text.length;
    let backslashes = 0;
    while (text.charCodeAt(i - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return i + 1;
  }
}

/** The index after the JSON value that starts at `i`. */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 0x22) return stringEnd(text, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (i < text.length) {
      const ch = text.charCodeAt(i);
      if (ch === 0x22) {
        i = stringEnd(text, i);
        continue;
      }
      if (ch === 0x7b || ch === 0x5b) depth++;
      else if ((ch === 0x7d || ch === 0x5d) && --depth === 0) return i + 1;
      i++;
    }
    return text.length;
  }
  // A number, true, false or null: up to what follows it.
  for (;;) {
    const ch = text.charCodeAt(i);
    if (ch === 0x2c || ch === 0x7d || ch === 0x5d || isSpace(ch) || Number.isNaN(ch)) return i;
    i++;
  }
}

/**
 * The text of each member of a JSON object, as [name, start, end] in the order written. Only for
 * text JSON.parse has accepted as an object: the scan finds boundaries, it does not check syntax.
 */
export function objectMembers(text: string): Array<[string, number, number]> {
  const members: Array<[string, number, number]> = [];
  let i = skipSpace(text, skipSpace(text, 0) + 1); // past the {
  while (text.charCodeAt(i) === 0x22) {
    const nameEnd = stringEnd(text, i);
    const raw = text.slice(i + 1, nameEnd - 1);
    const name = raw.includes('\\') ? (JSON.parse(text.slice(i, nameEnd)) as string) : raw;
    const start = skipSpace(text, skipSpace(text, nameEnd) + 1); // past the :
    const end = valueEnd(text, start);
    members.push([name, start, end]);
    i = skipSpace(text, end);
    if (text.charCodeAt(i) !== 0x2c) break;
    i = skipSpace(text, i + 1);
  }
  return members;
}

/**
 * Parses a client frame; undefined when it is not a JSON object with a string `type`. JSON.parse
 * checks the whole frame; the payload is then taken as the text the client wrote (the last
 * `payload` member, as JSON.parse reads duplicates), so relaying it costs no serialization.
 */
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
  let payloadText: string | undefined;
  if (payload !== undefined) {
    const members = objectMembers(text);
    for (let m = members.length - 1; m >= 0; m--) {
      const [name, start, end] = members[m]!;
      if (name === 'payload') {
        payloadText = text.slice(start, end);
        break;
      }
    }
  }
  return { type, ...(typeof dst === 'string' && dst !== '' ? { dst } : {}), ...(payloadText !== undefined ? { payloadText } : {}) };
}

/** A frame as relayed: only these four fields, `src` always the sender's registered id. */
export function relayFrame(type: string, src: string, dst: string, payloadText: string | undefined): string {
  const head = `{"type":${JSON.stringify(type)},"src":${JSON.stringify(src)},"dst":${JSON.stringify(dst)}`;
  return payloadText === undefined ? `${head}}` : `${head},"payload":${payloadText}}`;
}

export const errorFrame = (msg: string) => JSON.stringify({ type: PEERJS_TYPES.error, payload: { msg } });
