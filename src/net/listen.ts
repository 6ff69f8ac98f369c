import type { Server } from 'node:net';
import { LanternError } from '../core/errors.js';

/** A failed listen as a typed error that names the address and what to do. */
export function listenError(err: unknown, host: string, port: number): unknown {
  const where = formatUrl('http', host, port).slice('http://'.length);
  switch ((err as NodeJS.ErrnoException)?.code) {
    case 'EADDRINUSE':
      return new LanternError('LA_ERR_ADDRESS_IN_USE', `${where} is in use by another program: choose another port (0 picks a free one), or stop that program`, { cause: err });
    case 'EACCES':
      return new LanternError('LA_ERR_ADDRESS_UNAVAILABLE', `${where}: ports below 1024 need root or CAP_NET_BIND_SERVICE; choose a port above 1023`, { cause: err });
    case 'EADDRNOTAVAIL':
      return new LanternError('LA_ERR_ADDRESS_UNAVAILABLE', `${where}: no network interface of this machine has the address ${host}`, { cause: err });
    default:
      return err;
  }
}

/** Listens and returns the real address (port 0 picks a free port); LA_ERR_ADDRESS_* when the address cannot be had. */
export function listen(server: Server, host: string, port: number): Promise<{ host: string; port: number }> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(listenError(err, host, port));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      if (addr === null || typeof addr === 'string') return reject(new Error('server has no TCP address'));
      resolve({ host: addr.address, port: addr.port });
    });
  });
}

/** `http://127.0.0.1:8080`, with IPv6 literals bracketed. */
export function formatUrl(scheme: 'http' | 'https', host: string, port: number): string {
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Splits HOST:PORT (IPv6 as [::1]:PORT). */
export function parseHostPort(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}
