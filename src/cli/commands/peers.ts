import { Command } from 'commander';
import type { PeerInfo, Verdict } from '../../protocol/messages.js';
import { withApi } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

export function peersCommand(io: Io, done: (code: number) => void): Command {
  return new Command('peers')
    .description("Operator view: registered give peers, their state and last verdict, and each verifier's (verifier accounts)")
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      await withApi(resolveHome(flags.home, io.env), async (api) => {
        const peers = (await api.peers()).map((p) => ({ ...p, path: peerPath(p) }));
        if (flags.json) writeJson(io.stdout, { peers, verified: peers.filter((p) => p.state === 'verified').length });
        else {
          const verdictText = (v: Verdict) => `${v.ok ? 'pass' : `FAIL (${v.status})`} at ${new Date(v.at).toISOString()}`;
          for (const p of peers) {
            writeLine(io.stdout, `${p.peerId} ${p.host}:${p.port} ${p.path.padEnd(6)} ${p.state.padEnd(9)} ${p.lastVerdict ? verdictText(p.lastVerdict) : 'not verified yet'}`);
            // With several verifiers, each one's view (its latest verdict still counting).
            const views = Object.entries(p.verdicts ?? {});
            if (views.length > 1) for (const [verifier, v] of views) writeLine(io.stdout, `  verifier ${verifier}: ${verdictText(v)}`);
          }
        }
      });
      done(0);
    });
}

/**
 * How clients reach a peer: `direct` at its address, `mapped` through its router's port mapping,
 * or over WebRTC: `ice` (between the NATs) or `turn` (through the relay), as the last probe went.
 */
export function peerPath(p: PeerInfo): 'direct' | 'mapped' | 'ice' | 'turn' {
  if (p.ice) return p.lastVerdict?.path === 'turn' ? 'turn' : 'ice';
  return p.mapped ? 'mapped' : 'direct';
}
