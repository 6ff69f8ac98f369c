import { readFileSync } from 'node:fs';

/** This process's soft limit on open files (from /proc/self/limits), or `fallback` when unknown. */
export function openFileLimit(fallback = 1024): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return fallback;
    return m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
  } catch {
    return fallback;
  }
}

/**
 * A listener's default connection cap: `wanted`, but never so many that accepting them would use
 * the descriptors the process needs for everything else (`reserve`), given `perConnection`
 * descriptors per connection (2 for a proxy: the client and the destination).
 */
export function connectionCap(wanted: number, reserve = 256, perConnection = 1): number {
  return Math.max(16, Math.min(wanted, Math.floor((openFileLimit() - reserve) / perConnection)));
}

/**
 * A listener's caps: the total (given, else `connectionCap(defaultTotal)`) and the per-address
 * cap. A per-address cap left at its default is at most a quarter of the total, so that at a low
 * open-file limit one address cannot take the whole listener; values given explicitly are kept.
 */
export function listenerCaps(options: {
  total: number | undefined;
  defaultTotal: number;
  perConnection?: number;
  perAddress: number;
  perAddressIsDefault: boolean;
}): { maxConnections: number; maxConnectionsPerAddress: number } {
  const maxConnections = options.total ?? connectionCap(options.defaultTotal, 256, options.perConnection ?? 1);
  const quarter = Math.max(1, Math.floor(maxConnections / 4));
  const maxConnectionsPerAddress = options.perAddressIsDefault && maxConnections > 0 && options.perAddress > 0 ? Math.min(options.perAddress, quarter) : options.perAddress;
  return { maxConnections, maxConnectionsPerAddress };
}
