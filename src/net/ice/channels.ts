import type { DataChannel, PeerConnection } from 'node-datachannel';

/**
 * Data channel bookkeeping that node-datachannel (0.33) needs from its users:
 *
 * - Its `cleanup()` (which a process must call to exit) closes every channel wrapper still in its
 *   registry, and a wrapper leaves the registry only through the channel's closed event, and only
 *   if JS registered an `onClosed` callback. A wrapper collected before that leaves a dangling
 *   pointer, and `cleanup()` crashes the process (SIGSEGV in rtc::DataChannel::close). So every
 *   channel gets its `onClosed` at once, and is held here until it fired.
 * - One callback per event: the closed event is fanned out here to whoever asks (`whenClosed`).
 * - A connection's channels are closed before the connection (`closePeer`).
 */
const live = new Map<DataChannel, Array<() => void>>();
const closed = new WeakSet<DataChannel>();
const byPeer = new WeakMap<PeerConnection, Set<DataChannel>>();

/** Takes a new channel (created here, or announced by the peer) into the bookkeeping. */
export function adoptChannel(pc: PeerConnection, dc: DataChannel): DataChannel {
  if (live.has(dc) || closed.has(dc)) return dc;
  let mine = byPeer.get(pc);
  if (!mine) byPeer.set(pc, (mine = new Set()));
  const channels = mine;
  channels.add(dc);
  live.set(dc, []);
  dc.onClosed(() => {
    const listeners = live.get(dc) ?? [];
    live.delete(dc);
    closed.add(dc);
    channels.delete(dc);
    for (const listener of listeners) listener();
  });
  return dc;
}

/** Calls `fn` once the channel has closed (at once if it has). */
export function whenClosed(dc: DataChannel, fn: () => void): void {
  const listeners = live.get(dc);
  if (listeners) listeners.push(fn);
  else if (closed.has(dc)) fn();
}

/** A new data channel on `pc`, in the bookkeeping. */
export function createChannel(pc: PeerConnection, label: string): DataChannel {
  return adoptChannel(pc, pc.createDataChannel(label));
}

/** Closes a channel; a channel already gone is no error. */
export function closeChannel(dc: DataChannel): void {
  try {
    dc.close();
  } catch {
    // already closed
  }
}

/** Closes a peer connection: its channels first, then the connection. */
export function closePeer(pc: PeerConnection): void {
  for (const dc of byPeer.get(pc) ?? []) closeChannel(dc);
  try {
    pc.close();
  } catch {
    // already closed
  }
}

/** Channels whose closed event has not fired yet (tests check that none is left behind). */
export function liveChannelCount(): number {
  return live.size;
}
