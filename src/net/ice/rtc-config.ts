import type { IceServer as RtcIceServer, RtcConfig } from 'node-datachannel';
import type { IceServersResponse } from '../../protocol/messages.js';

/**
 * The server's ICE servers (RTCIceServer form: `urls`, `username`, `credential`) as
 * node-datachannel takes them. TURN entries become objects, since a REST API username holds a
 * colon (`EXPIRY:USER`) that a `turn:user:pass@host` URL could not carry unambiguously.
 */
export function rtcIceServers(servers: IceServersResponse['iceServers']): RtcIceServer[] {
  const out: RtcIceServer[] = [];
  for (const server of servers) {
    for (const url of server.urls) {
      const m = /^(stuns?|turns?):(?:\[([^\]]+)\]|([^:?]+))(?::(\d+))?(?:\?transport=(udp|tcp))?$/.exec(url);
      if (!m) continue;
      const [, scheme, v6, host, port, transport] = m;
      const hostname = (v6 ?? host)!;
      if (scheme === 'stun' || scheme === 'stuns') {
        out.push({ hostname, port: Number(port ?? (scheme === 'stuns' ? 5349 : 3478)) });
      } else if (server.username !== undefined && server.credential !== undefined) {
        out.push({
          hostname,
          port: Number(port ?? (scheme === 'turns' ? 5349 : 3478)),
          username: server.username,
          password: server.credential,
          relayType: scheme === 'turns' ? 'TurnTls' : transport === 'tcp' ? 'TurnTcp' : 'TurnUdp',
        });
      }
    }
  }
  return out;
}

/** A PeerConnection's configuration: the ICE servers, and relay-only when asked (tests, TURN-only paths). */
export function rtcConfig(servers: IceServersResponse['iceServers'], o: { relayOnly?: boolean; bindAddress?: string } = {}): RtcConfig {
  return {
    iceServers: rtcIceServers(servers),
    ...(o.relayOnly ? { iceTransportPolicy: 'relay' as const } : {}),
    ...(o.bindAddress ? { bindAddress: o.bindAddress } : {}),
  };
}
