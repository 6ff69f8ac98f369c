import { Command } from 'commander';
import { withApi } from '../agent-home.js';
import { resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';

export function peersCommand(io: Io, done: (code: number) => void): Command {
  return new Command('peers')
    .description('Operator view: registered give peers, their state and last verdict (verifier accounts)')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--json', 'print JSON')
    .action(async (flags: { home?: string; json?: boolean }) => {
      await withApi(resolveHome(flags.home, io.env), async (api) => {
        const peers = await api.peers();
        if (flags.json) writeJson(io.stdout, { peers, verified: peers.filter((p) => p.state === 'verified').length });
        else {
          for (const p of peers) {
            const v = p.lastVerdict ? `${p.lastVerdict.ok ? 'pass' : `FAIL (${p.lastVerdict.status})`} at ${new Date(p.lastVerdict.at).toISOString()}` : 'not verified yet';
            writeLine(io.stdout, `${p.peerId} ${p.host}:${p.port} ${p.state.padEnd(9)} ${v}`);
          }
        }
      });
      done(0);
    });
}
