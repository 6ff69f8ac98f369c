// Writes dist/build-info.json: the git commit the build comes from (`--version` prints it).
// Outside a git checkout (an npm tarball) the commit is "unknown".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  if (dirty) commit += '-dirty';
} catch {
  // no git, or not a checkout
}
writeFileSync(new URL('../dist/build-info.json', import.meta.url), `${JSON.stringify({ commit })}\n`);
