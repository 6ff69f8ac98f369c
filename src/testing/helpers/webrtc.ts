import type { PeerConnection } from 'node-datachannel';

/**
 * Signals two in-process peers to each other directly (descriptions and trickled candidates). A
 * candidate waits for the description it belongs to, and one for a closed peer is dropped:
 * libdatachannel aborts the whole process on a remote candidate without a description or ICE
 * transport (a C++ exception no JS catch sees).
 */
export function linkPeers(a: PeerConnection, b: PeerConnection): void {
  const link = (from: PeerConnection, to: PeerConnection) => {
    const early: Array<[string, string]> = [];
    const open = () => to.state() !== 'closed' && from.state() !== 'closed';
    from.onLocalDescription((sdp, type) => {
      if (!open()) return;
      to.setRemoteDescription(sdp, type);
      for (const [c, mid] of early.splice(0)) to.addRemoteCandidate(c, mid);
    });
    from.onLocalCandidate((c, mid) => {
      if (!open()) return;
      if (to.remoteDescription()) to.addRemoteCandidate(c, mid);
      else early.push([c, mid]);
    });
  };
  link(a, b);
  link(b, a);
}
