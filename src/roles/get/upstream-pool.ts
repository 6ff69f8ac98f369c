import type { Duplex } from 'node:stream';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { openTunnel, type Upstream } from '../../net/tunnel.js';

export interface UpstreamSource {
  /** The give peers to use now (the verified round robin and contacts' ads). */
  upstreams(): Upstream[];
  /** A valid ticket (refreshed by the caller's source before it expires). */
  ticket(): Promise<string>;
}

/**
 * Opens tunnels through give peers in rotation. When a peer cannot open the tunnel (down,
 * refusing, answering the decoy), the same request goes to the next peer, invisibly to the client.
 */
export class UpstreamPool {
  readonly #source: UpstreamSource;
  readonly #logger: Logger;
  #next = 0;

  constructor(components: { source: UpstreamSource; logger: Logger }) {
    this.#source = components.source;
    this.#logger = components.logger;
  }

  async tunnel(target: Upstream): Promise<Duplex> {
    const peers = this.#source.upstreams();
    if (peers.length === 0) throw new LanternError('LA_ERR_DESTINATION_UNREACHABLE', 'No give peer is known yet (no verified peer, no ad from a contact)');
    const ticket = await this.#source.ticket();
    const start = this.#next++ % peers.length;
    let last: unknown;
    for (let i = 0; i < peers.length; i++) {
      const peer = peers[(start + i) % peers.length]!;
      try {
        return await openTunnel(peer, ticket, target);
      } catch (err) {
        last = err;
        this.#logger.info({ code: (err as LanternError).code }, 'give peer failed; trying the next one');
      }
    }
    throw LanternError.is(last) ? last : new LanternError('LA_ERR_DESTINATION_UNREACHABLE');
  }
}
