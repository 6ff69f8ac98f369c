import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import { CLI } from '../testing/helpers/cli.js';
import { requireTool } from '../testing/helpers/required-tools.js';

// Issue 17, item 9: what an operator installs to run lantern-agent as a service, and shell completion.

const run = promisify(execFile);
const contrib = fileURLToPath(new URL('../../contrib/systemd/', import.meta.url));

test('the systemd units in contrib/ pass systemd-analyze verify without a warning', async (t) => {
  await requireTool('systemd-analyze');
  const units = (await readdir(contrib)).filter((f) => f.endsWith('.service')).sort();
  t.deepEqual(units, ['lantern-agent-get.service', 'lantern-agent-give.service', 'lantern-agent-server.service']);
  for (const unit of units) {
    const r = await run('systemd-analyze', ['verify', '--man=no', unit], { cwd: contrib }).catch((err: { code: number; stdout: string; stderr: string }) => err);
    t.is((r as { code?: number }).code ?? 0, 0, `${unit}: ${r.stderr}`);
    t.is(r.stderr.trim(), '', `${unit} has no warning`);
  }
});

/** What bash (or zsh) completes for the words typed so far, the last being the one under the cursor. */
async function complete(shell: 'bash' | 'zsh', words: string[]): Promise<string[]> {
  const script = `source <(${process.execPath} ${CLI} completion ${shell})
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')})
COMP_CWORD=${words.length - 1}
${shell === 'bash' ? '_lantern_agent; printf "%s\\n" "${COMPREPLY[@]}"' : `words=("\${COMP_WORDS[@]}"); CURRENT=${words.length}; compgen -F _lantern_agent -- '${words.at(-1)}'`}`;
  const { stdout } = await run(shell, shell === 'zsh' ? ['-f', '-c', script] : ['-c', script]);
  // zsh filters the candidates itself (its compadd); bash's compgen already did.
  return stdout.split('\n').filter((w) => w && w.startsWith(words.at(-1)!));
}

test('completion for bash and zsh: commands, subcommands and each command’s options, from the commands themselves', async (t) => {
  await requireTool('zsh');
  for (const shell of ['bash', 'zsh'] as const) {
    t.deepEqual(await complete(shell, ['lantern-agent', 'ser']), ['server'], shell);
    t.deepEqual(await complete(shell, ['lantern-agent', 'me']), ['messages'], shell);
    t.deepEqual((await complete(shell, ['lantern-agent', 'contacts', ''])).sort(), ['add', 'list', 'remove'], shell);
    t.deepEqual(await complete(shell, ['lantern-agent', 'verify', '--int']), ['--interval'], shell);
    t.deepEqual(await complete(shell, ['lantern-agent', 'contacts', 'add', '--na']), ['--name'], shell);
    t.deepEqual(await complete(shell, ['lantern-agent', 'get', '--log-f']), ['--log-format'], shell);
  }
  const bad = await run(process.execPath, [CLI, 'completion', 'fish']).catch((err: { code: number; stderr: string }) => err);
  t.is((bad as { code: number }).code, 2);
  t.regex(bad.stderr, /LA_ERR_USAGE: completion: the shell must be bash or zsh/);
});
