import type { Clock } from '../core/clock.js';
import type { TicketResponse } from '../protocol/ticket.js';

/** A ticket is renewed when less than this is left of it. */
const TICKET_RENEW_MS = 60_000;

/**
 * One ticket per give peer (a ticket opens only the peer it names), kept until shortly before it
 * expires: one ticket reused for its lifetime, then a new one under a new pseudonym. get and verify
 * both use it; the verifier also renews at random (see Verifier), so that a peer sees from it
 * both patterns a population of users shows: pseudonyms it saw before, and new ones.
 */
export class TicketCache {
  readonly #c: { clock: Clock; issue(request: { peer: string }): Promise<TicketResponse> };
  readonly #tickets = new Map<string, TicketResponse>();

  constructor(components: { clock: Clock; issue(request: { peer: string }): Promise<TicketResponse> }) {
    this.#c = components;
  }

  /** A valid ticket for the peer with this fingerprint (`renew`: a new one, replacing the one held). */
  async ticket(peer: string, o: { renew?: boolean } = {}): Promise<string> {
    const now = this.#c.clock.now();
    let held = this.#tickets.get(peer);
    if (!held || o.renew || held.expiresAt - now < TICKET_RENEW_MS) {
      held = await this.#c.issue({ peer });
      this.#tickets.set(peer, held);
      for (const [k, v] of this.#tickets) if (v.expiresAt <= now) this.#tickets.delete(k);
    }
    return held.ticket;
  }
}
