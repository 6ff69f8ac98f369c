import type { DataChannel, PeerConnection } from 'node-datachannel';
import { z } from 'zod';
import { LanternError } from '../../core/errors.js';
import { ChannelStream } from './channel-stream.js';
import { adoptChannel, closeChannel, createChannel, whenClosed } from './channels.js';

export { closePeer, createChannel } from './channels.js';

/**
 * Tunnels over a WebRTC peer connection: one data channel per tunnel. The opener's first string
 * message is the request (the ticket and the destination, as a CONNECT carries them), the
 * acceptor's first string message the answer; then the channel is a ChannelStream both ways.
 */
export const ChannelTunnelRequest = z.strictObject({
  v: z.literal(1),
  ticket: z.string().min(1).max(4096),
  host: z.string().min(1).max(255),
  port: z.int().min(1).max(65535),
});
export type ChannelTunnelRequest = z.infer<typeof ChannelTunnelRequest>;

/** Why a tunnel was refused: the give proxy's failures, and `ticket` (no valid ticket for this peer). */
export const ChannelTunnelRefusal = z.enum(['ticket', 'busy', 'forbidden', 'unreachable', 'bad-request']);
export type ChannelTunnelRefusal = z.infer<typeof ChannelTunnelRefusal>;
const ChannelTunnelAnswer = z.union([z.strictObject({ ok: z.literal(true) }), z.strictObject({ ok: z.literal(false), status: ChannelTunnelRefusal })]);

/** The label of tunnel channels (a fixed, bland label: the channel's purpose is in its first message). */
const LABEL = 'data';
/** A refused channel the opener does not close is closed after this. */
const REFUSED_LINGER_MS = 5000;
/** A request longer than this is no request. */
const MAX_REQUEST = 8192;

/** A refusal (or a channel that failed) as the error a TCP tunnel would have given. */
function tunnelError(status: string, message: string): LanternError {
  const details = { status };
  switch (status) {
    case 'forbidden':
      return new LanternError('LA_ERR_DESTINATION_FORBIDDEN', message, { details: { ...details, peerStatus: 403 } });
    case 'ticket':
      return new LanternError('LA_ERR_TICKET_INVALID', message, { details: { ...details, peerStatus: 407 } });
    case 'busy':
      return new LanternError('LA_ERR_PROXY_BUSY', message, { details: { ...details, peerStatus: 503 } });
    case 'unreachable':
      return new LanternError('LA_ERR_DESTINATION_UNREACHABLE', message, { details: { ...details, peerStatus: 502 } });
    default:
      return new LanternError('LA_ERR_DESTINATION_UNREACHABLE', message, { details: { ...details, stage: 'channel' } });
  }
}

/**
 * Opens a tunnel through a connected peer: resolves with the stream once the peer accepted, or
 * rejects as a TCP tunnel would (LA_ERR_DESTINATION_FORBIDDEN, _UNREACHABLE, LA_ERR_TICKET_INVALID,
 * LA_ERR_PROXY_BUSY; `details.status`: the refusal, `timeout`, `closed` or `bad-answer`).
 */
export function openChannelTunnel(pc: PeerConnection, request: Omit<ChannelTunnelRequest, 'v'>, timeoutMs: number): Promise<ChannelStream> {
  return new Promise((resolve, reject) => {
    let dc: DataChannel;
    try {
      dc = createChannel(pc, LABEL);
    } catch (err) {
      return reject(tunnelError('closed', `cannot open a data channel: ${(err as Error).message}`));
    }
    let settled = false;
    const settle = (err?: LanternError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        stream.destroy();
        reject(err);
      } else resolve(stream);
    };
    // The stream owns the channel from the start; the answer is its preface.
    const stream: ChannelStream = new ChannelStream(dc, {
      preface: (text) => {
        let answer: z.infer<typeof ChannelTunnelAnswer>;
        try {
          answer = ChannelTunnelAnswer.parse(JSON.parse(text));
        } catch {
          throw tunnelError('bad-answer', 'the peer answered something that is no tunnel answer');
        }
        if (!answer.ok) throw tunnelError(answer.status, `the peer refused the tunnel: ${answer.status}`);
        settle();
      },
    });
    stream.once('error', (err) => settle(LanternError.is(err) ? err : tunnelError('closed', err.message)));
    stream.once('close', () => settle(tunnelError('closed', 'the data channel closed before the answer')));
    const timer = setTimeout(() => settle(tunnelError('timeout', `the peer did not answer within ${timeoutMs} ms`)), timeoutMs);
    const send = () => {
      try {
        dc.sendMessage(JSON.stringify({ v: 1, ...request }));
      } catch (err) {
        settle(tunnelError('closed', (err as Error).message));
      }
    };
    if (dc.isOpen()) send();
    else dc.onOpen(send);
  });
}

/**
 * What the acceptor does with a request: `accept()` sends the answer `ok` (the stream then carries
 * the tunnel) or `refuse(status)` the refusal. The stream exists from the request on (it owns the
 * channel's callbacks), so the give proxy can tie its slot to the stream's close as for a socket.
 */
export type ChannelTunnelHandler = (request: ChannelTunnelRequest, stream: ChannelStream, answer: { accept(): void; refuse(status: ChannelTunnelRefusal): void }) => void;

/**
 * Serves every tunnel channel the peer opens. The request must come within `requestTimeoutMs`.
 * `onStreamError` hears why a tunnel's stream ended in an error (the peer vanished, a channel that
 * closed mid-stream, a broken rule), for the log.
 */
export function acceptChannelTunnels(pc: PeerConnection, handler: ChannelTunnelHandler, requestTimeoutMs = 10_000, onStreamError?: (err: Error) => void): void {
  pc.onDataChannel((dc) => {
    adoptChannel(pc, dc);
    let handled = false;
    const close = () => closeChannel(dc);
    const timer = setTimeout(() => handled || close(), requestTimeoutMs);
    whenClosed(dc, () => clearTimeout(timer));
    // A refusal is left for the opener to close on (a close now could overtake the refusal, see
    // channel-stream.ts); one that does not is closed after a while.
    const refuse = (status: ChannelTunnelRefusal) => {
      try {
        dc.sendMessage(JSON.stringify({ ok: false, status }));
      } catch {
        return close();
      }
      setTimeout(close, REFUSED_LINGER_MS).unref();
    };
    dc.onMessage((msg) => {
      if (handled) return;
      handled = true;
      clearTimeout(timer);
      let request: ChannelTunnelRequest;
      try {
        if (typeof msg !== 'string' || msg.length > MAX_REQUEST) throw new Error('not a request');
        request = ChannelTunnelRequest.parse(JSON.parse(msg));
      } catch {
        return refuse('bad-request');
      }
      // Data before the answer is held (within the window) by the stream, as on a socket. Its
      // errors (a refused opener closing the channel, a peer that vanished) end the stream and
      // its tunnel; the handler's own listeners see them too, none is left to crash the process.
      const stream = new ChannelStream(dc).on('error', (err: Error) => onStreamError?.(err));
      let answered = false;
      handler(request, stream, {
        accept: () => {
          if (answered) return;
          answered = true;
          stream.sendPreface(JSON.stringify({ ok: true }));
        },
        refuse: (status) => {
          if (answered) return void stream.destroy();
          answered = true;
          if (!stream.sendPreface(JSON.stringify({ ok: false, status }))) return void stream.destroy();
          // Left for the opener to close (a close now could overtake the refusal).
          setTimeout(() => stream.destroy(), REFUSED_LINGER_MS).unref();
        },
      });
    });
  });
}
