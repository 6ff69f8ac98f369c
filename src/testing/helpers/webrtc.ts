import type { PeerConnection } from 'node-datachannel';

/**
 * Signals two in-process peers to each other directly (descriptions and trickled candidates). A
 * candidate waits for the description it belongs to: libdatachannel aborts the whole process on a
 * remote candidate that comes first.
 */
export function linkPeers(a: PeerConnection, b: PeerConnection): void {
  const link = (from: PeerConnection, to: PeerConnection) => {
    const early: Array<[string, string]> = [];
    from.onLocalDescription((sdp, type) => {
      to.setRemoteDescription(sdp, type);
      for (const [c, mid] of early.splice(0)) to.addRemoteCandidate(c, mid);
    });
    from.onLocalCandidate((c, mid) => (to.remoteDescription() ? to.addRemoteCandidate(c, mid) : early.push([c, mid])));
  };
  link(a, b);
  link(b, a);
}
