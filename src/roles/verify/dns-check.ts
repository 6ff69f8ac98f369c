import { Resolver } from 'node:dns/promises';
import { isIPv6 } from 'node:net';

/** Where the verifier asks for peers' names: the server's DNS (`server --dns-listen`) and its zone. */
export interface PeerDns {
  /** HOST:PORT of the DNS server ([v6]:port for IPv6). */
  server: string;
  zone: string;
}

/**
 * Resolves `<peer-id>.peers.ZONE` as a client would, and checks that it names the registered
 * address: undefined when it does, else the verdict status (`dns-failed`: no answer; `dns-mismatch`:
 * another address). Get clients and browsers that find peers by name rely on these answers.
 */
export async function checkPeerName(dns: PeerDns, peer: { peerId: string; host: string }, timeoutMs: number): Promise<'dns-failed' | 'dns-mismatch' | undefined> {
  const resolver = new Resolver({ timeout: Math.max(100, timeoutMs), tries: 1 });
  resolver.setServers([dns.server]);
  const name = `${peer.peerId}.peers.${dns.zone.replace(/\.+$/, '')}`;
  try {
    const addresses = isIPv6(peer.host) ? await resolver.resolve6(name) : await resolver.resolve4(name);
    return addresses.includes(peer.host) ? undefined : 'dns-mismatch';
  } catch {
    return 'dns-failed';
  } finally {
    resolver.cancel();
  }
}
