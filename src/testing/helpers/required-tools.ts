import { access } from 'node:fs/promises';

/** The Debian programs some tests start; `.ci/run` installs every one of them. */
export const TOOLS = {
  'redis-server': { path: '/usr/bin/redis-server', pkg: 'redis-server' },
  'redis-cli': { path: '/usr/bin/redis-cli', pkg: 'redis-tools' },
  nginx: { path: '/usr/sbin/nginx', pkg: 'nginx' },
  chromium: { path: '/usr/bin/chromium', pkg: 'chromium' },
  dig: { path: '/usr/bin/dig', pkg: 'dnsutils' },
  tcpdump: { path: '/usr/bin/tcpdump', pkg: 'tcpdump' },
  setpriv: { path: '/usr/bin/setpriv', pkg: 'util-linux' },
  script: { path: '/usr/bin/script', pkg: 'bsdutils' },
  'systemd-analyze': { path: '/usr/bin/systemd-analyze', pkg: 'systemd' },
  zsh: { path: '/usr/bin/zsh', pkg: 'zsh' },
  ip: { path: '/usr/sbin/ip', pkg: 'iproute2' },
  iptables: { path: '/usr/sbin/iptables', pkg: 'iptables' },
  nft: { path: '/usr/sbin/nft', pkg: 'nftables' },
  miniupnpd: { path: '/usr/sbin/miniupnpd', pkg: 'miniupnpd' },
  curl: { path: '/usr/bin/curl', pkg: 'curl' },
  turnserver: { path: '/usr/bin/turnserver', pkg: 'coturn' },
} as const;

export type Tool = keyof typeof TOOLS;

/**
 * Throws a clear error when a program a test needs is missing: such a test fails (it is never
 * counted as passed). Call it in a `before` hook or at the top of the test.
 */
export async function requireTool(...tools: Tool[]): Promise<void> {
  for (const tool of tools) {
    const { path, pkg } = TOOLS[tool];
    const found = await access(path).then(
      () => true,
      () => false,
    );
    if (!found) throw new Error(`${tool} is not installed at ${path}: apt-get install -y ${pkg} (.ci/run installs it)`);
  }
}
