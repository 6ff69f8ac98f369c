import type { Duplex } from 'node:stream';
import { Client } from 'undici';
import { LanternError } from '../core/errors.js';
import { TICKET_USERNAME } from '../protocol/ticket.js';

export interface Upstream {
  host: string;
  port: number;
}

/** The Proxy-Authorization value carrying a ticket. */
export function ticketAuthorization(ticket: string): string {
  return `Basic ${Buffer.from(`${TICKET_USERNAME}:${ticket}`).toString('base64')}`;
}

/** Request header carrying a verifier's challenge; the give peer answers in PEER_PROOF_HEADER. */
export const CHALLENGE_HEADER = 'lantern-challenge';
export const PEER_PROOF_HEADER = 'lantern-peer-proof';

/**
 * Opens a tunnel to `target` through a give peer with HTTP CONNECT (undici), presenting the ticket.
 * Shared by the get role and the verifier, so what is verified is what clients use. Fails with
 * LA_ERR_DESTINATION_UNREACHABLE (dial failed, or the peer answered anything but 200, such as the
 * decoy 404) within `timeoutMs`.
 */
export async function openTunnel(upstream: Upstream, ticket: string, target: Upstream, timeoutMs = 5000): Promise<Duplex> {
  return (await connectTunnel(upstream, ticket, target, timeoutMs)).socket;
}

/** openTunnel, also sending a challenge and returning the peer's answer to it (if any). */
export async function connectTunnel(
  upstream: Upstream,
  ticket: string,
  target: Upstream,
  timeoutMs = 5000,
  challenge?: string,
): Promise<{ socket: Duplex; proof: string | undefined }> {
  const host = upstream.host.includes(':') ? `[${upstream.host}]` : upstream.host;
  const client = new Client(`http://${host}:${upstream.port}`, { connectTimeout: timeoutMs, headersTimeout: timeoutMs });
  const path = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  try {
    const { socket, statusCode, headers } = await client.connect({
      path,
      headers: { 'proxy-authorization': ticketAuthorization(ticket), host: path, ...(challenge ? { [CHALLENGE_HEADER]: challenge } : {}) },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (statusCode !== 200) {
      socket.destroy();
      throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `The peer answered ${statusCode}`);
    }
    socket.once('close', () => void client.destroy());
    const proof = headers[PEER_PROOF_HEADER];
    return { socket, proof: typeof proof === 'string' ? proof : undefined };
  } catch (err) {
    void client.destroy();
    if (LanternError.is(err)) throw err;
    throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', `Tunnel through ${upstream.host}:${upstream.port} failed: ${(err as Error).message}`, { cause: err });
  }
}
