import { LanternError } from '../../core/errors.js';
import type { FailureAnswer } from '../../net/proxy-front-end.js';
import { SOCKS_REPLY } from '../../net/socks5.js';
import type { TunnelFailureCause } from './upstream-pool.js';

/**
 * What get's local proxy tells a client whose tunnel could not be opened: a status line of its own
 * for each cause, a short body naming the cause and the next step (curl -v and a browser's forward
 * request show it), and the SOCKS5 reply code closest to it.
 */
const ANSWERS: Record<TunnelFailureCause, (target: string, tried: number) => FailureAnswer> = {
  'no-peers': () => ({
    status: 503,
    reason: 'No Give Peer Yet',
    socks: SOCKS_REPLY.networkUnreachable,
    text:
      'lantern-agent get: no give peer is known yet.\n' +
      'A give peer is used once a verifier has passed it (`lantern-agent verify`, run by the server operator) ' +
      'or once a contact has sent you its ad (`lantern-agent inbox`, then `lantern-agent ads`). ' +
      'get reads the list again every few seconds; `lantern-agent doctor` shows what this home knows.',
  }),
  'server-unreachable': () => ({
    status: 503,
    reason: 'Lantern Server Unreachable',
    socks: SOCKS_REPLY.networkUnreachable,
    text:
      'lantern-agent get: the lantern server cannot be reached, and no give peer is known from before or from a contact\'s ad.\n' +
      'Check the network and the server address (`lantern-agent doctor`); get tries again every few seconds.',
  }),
  'peers-failed': (_target, tried) => ({
    status: 502,
    reason: 'Give Peers Failed',
    socks: SOCKS_REPLY.failure,
    text:
      `lantern-agent get: every known give peer (${tried}) failed to open the tunnel: down, unreachable from here, or blocked.\n` +
      'The server is told of peers that fail while others work, and a verifier probes them; try again in a few seconds.',
  }),
  'destination-refused': (target) => ({
    status: 403,
    reason: 'Destination Refused By Give Peer',
    socks: SOCKS_REPLY.notAllowed,
    text:
      `lantern-agent get: the give peer refuses to connect to ${target}: it is a private, loopback or link-local address.\n` +
      'Give peers reach only public addresses unless started with --allow-private-destinations (local tests and demos).',
  }),
  'destination-unreachable': (target) => ({
    status: 504,
    reason: 'Destination Unreachable',
    socks: SOCKS_REPLY.hostUnreachable,
    text: `lantern-agent get: the give peer could not reach ${target} (refused, no route, or no answer in time). The peer itself works.`,
  }),
};

/** The cause of a failed `UpstreamPool.tunnel`, as the local proxy answers it. */
export function failureAnswer(err: unknown, target: { host: string; port: number }): FailureAnswer & { cause: TunnelFailureCause } {
  const details = LanternError.is(err) ? err.details : undefined;
  const cause = (details?.['cause'] as TunnelFailureCause | undefined) ?? 'peers-failed';
  const where = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
  return { cause, ...ANSWERS[cause](where, Number(details?.['tried'] ?? 0)) };
}
