import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// Secrets at rest: after the README's commands (account add, server, login, whoami), every file
// under the data dir and the home is the user's alone (files 0600, directories 0700), also when the
// directories existed before with looser modes (which are tightened, with a warning naming them).

async function modes(dir: string): Promise<Array<{ path: string; mode: number; dir: boolean }>> {
  const out: Array<{ path: string; mode: number; dir: boolean }> = [];
  const visit = async (path: string) => {
    const st = await stat(path);
    out.push({ path, mode: st.mode & 0o777, dir: st.isDirectory() });
    if (st.isDirectory()) for (const name of await readdir(path)) await visit(join(path, name));
  };
  await visit(dir);
  return out;
}

test('the data dir and a home are private after the README commands, even if they were created 0755', async (t) => {
  const tmp = await tempDir('lantern-modes-');
  t.teardown(() => tmp.remove());
  const dataDir = join(tmp.path, 'data');
  const home = join(tmp.path, 'home');
  // As `mkdir` with a default umask leaves them, with a file in each.
  for (const d of [dataDir, home]) {
    await mkdir(d, { mode: 0o755 });
    await chmod(d, 0o755);
    await writeFile(join(d, 'notes.txt'), 'x', { mode: 0o644 });
    await chmod(join(d, 'notes.txt'), 0o644);
  }
  const add = await runCli(['account', 'add', 'alice', '--data-dir', dataDir, '--password-stdin'], { stdin: 'correct horse battery\n' });
  t.is(add.code, 0, add.stderr);
  t.true(add.stderr.includes(`warning: tightened ${dataDir} from 0755 to 0700`), add.stderr);
  const server = await startServer(dataDir);
  t.teardown(() => server.stop());
  const login = await runCli(['login', '--server', server.url, '--user', 'alice', '--password-stdin', '--home', home], { stdin: 'correct horse battery\n' });
  t.is(login.code, 0, login.stderr);
  t.true(login.stderr.includes(`warning: tightened ${home} from 0755 to 0700`), login.stderr);
  t.true(login.stderr.includes(`warning: tightened ${join(home, 'notes.txt')} from 0644 to 0600`), login.stderr);
  t.is((await runCli(['whoami', '--home', home])).code, 0);
  for (const root of [dataDir, home]) {
    const all = await modes(root);
    t.true(all.length > 5, `${root}: ${all.length} entries`);
    const loose = all.filter((e) => (e.mode & 0o077) !== 0);
    t.deepEqual(loose.map((e) => `${e.path} 0${e.mode.toString(8)}`), [], `nothing under ${root} is readable by others`);
    t.true(all.some((e) => e.path.endsWith('ca-key.pem') || e.path.endsWith('CURRENT')), 'store and key files were checked');
  }
});
