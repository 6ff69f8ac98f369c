import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyAgent } from 'undici';
import { connectPinned, connectSocks5, PeerTunnels, ticketAuthorization, type PeerEndpoint } from '../../net/tunnel.js';
import type { RunningRole } from './cli.js';

/** The peer a running `give --json` announced (its address, key, fingerprint). */
export function announcedPeer(give: RunningRole): PeerEndpoint & { fingerprint: string } {
  const listening = give.events.find((e) => e['event'] === 'listening')!;
  const url = new URL(give.url);
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port),
    identityKey: String(listening['identityKey']),
    fingerprint: String(listening['fingerprint']),
    ...(listening['tls'] === false ? { plaintext: true } : {}),
  };
}

/** An undici dispatcher through the give peer as `curl --proxy https://… --proxy-insecure` uses it (HTTP/1.1 over TLS). */
export function httpsProxy(give: RunningRole | string, ticket: string, proxyTunnel = true): ProxyAgent {
  const uri = typeof give === 'string' ? give : give.url;
  return new ProxyAgent({ uri, token: ticketAuthorization(ticket), proxyTunnel, proxyTls: { rejectUnauthorized: false } });
}

/** GET `url` (http://) over an open tunnel; the body. */
export function getOver(tunnel: Duplex, url: string): Promise<Buffer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ method: 'GET', path: `${u.pathname}${u.search}`, headers: { host: u.host, connection: 'close' }, createConnection: () => tunnel as Socket }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** GET through the peer as get does: an HTTP/2 CONNECT stream over TLS pinned to its key. */
export async function getViaH2(peer: PeerEndpoint, ticket: string, url: string): Promise<Buffer> {
  const tunnels = new PeerTunnels();
  try {
    const u = new URL(url);
    return await getOver(await tunnels.open(peer, ticket, { host: u.hostname, port: Number(u.port) }), url);
  } finally {
    tunnels.close();
  }
}

/** GET through the peer's SOCKS5 side inside TLS (pinned). */
export async function getViaSocksTls(peer: PeerEndpoint, ticket: string, url: string): Promise<Buffer> {
  const u = new URL(url);
  const socket = await connectPinned(peer, 5000, ['http/1.1']);
  return getOver(await connectSocks5(socket, ticket, { host: u.hostname, port: Number(u.port) }, 5000), url);
}

/** GET `url` through the peer as a plain HTTP forward proxy over TLS (absolute-form request); status and body. */
export function getViaForwardTls(give: RunningRole, ticket: string, url: string): Promise<{ status: number; body: Buffer }> {
  const proxy = new URL(give.url);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: proxy.hostname,
        port: Number(proxy.port),
        path: url,
        method: 'GET',
        headers: { host: new URL(url).host, 'proxy-authorization': ticketAuthorization(ticket), connection: 'close' },
        rejectUnauthorized: false,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}
