import { networkKey } from './address.js';

export interface ConnectionLimits {
  /** Connections open at once on the listener (0: no limit). */
  maxTotal: number;
  /** Connections open at once from one client address: an IPv4 address, an IPv6 /64 (0: no limit). */
  maxPerAddress: number;
}

/** The key a client address is counted under: IPv4 as is, IPv6 by its /64 (one subscriber's network). */
export function addressKey(address: string): string {
  // The common case without parsing: a dotted IPv4 address, possibly IPv4-mapped.
  if (/^(?:::ffff:)?\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/i.test(address)) return address.slice(address.lastIndexOf(':') + 1);
  return networkKey(address, { v4: 32, v6: 64 });
}

/**
 * Caps the connections of a listener, in total and per client address, so that one client (or a
 * few) with thousands of idle sockets cannot take every descriptor. A connection over a cap is
 * closed at once, before anything is read from it.
 */
export class ConnectionLimiter {
  readonly #limits: ConnectionLimits;
  readonly #perAddress = new Map<string, number>();
  #total = 0;
  /** Connections closed at once because a cap was reached. */
  refused = 0;

  constructor(limits: ConnectionLimits) {
    this.#limits = limits;
  }

  get open(): number {
    return this.#total;
  }

  /**
   * Counts a new connection until it closes; false (and the socket destroyed) when a cap is
   * reached. `address` is the client's address (the socket's remote address by default).
   */
  admit(socket: { remoteAddress?: string | undefined; once(event: 'close', fn: () => void): unknown; destroy(): unknown }, address?: string): boolean {
    const { maxTotal, maxPerAddress } = this.#limits;
    if (maxTotal === 0 && maxPerAddress === 0) return true;
    const key = maxPerAddress > 0 ? addressKey(address ?? socket.remoteAddress ?? '?') : '';
    const mine = this.#perAddress.get(key) ?? 0;
    if ((maxTotal > 0 && this.#total >= maxTotal) || (maxPerAddress > 0 && mine >= maxPerAddress)) {
      this.refused++;
      socket.destroy();
      return false;
    }
    this.#total++;
    this.#perAddress.set(key, mine + 1);
    socket.once('close', () => {
      this.#total--;
      const left = (this.#perAddress.get(key) ?? 1) - 1;
      if (left > 0) this.#perAddress.set(key, left);
      else this.#perAddress.delete(key);
    });
    return true;
  }
}
