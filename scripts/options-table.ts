// The README's option tables (server, give, get, verify), from the commands' own options.
// `npx tsx scripts/options-table.ts` prints them; `--write` puts each into README.md between its
// markers (`<!-- options: NAME -->` … `<!-- /options -->`).
import { readFileSync, writeFileSync } from 'node:fs';
import { optionsBlock, readmeOptionTables } from '../src/cli/options-table.js';

const tables = await readmeOptionTables();
if (process.argv.includes('--write')) {
  const path = new URL('../README.md', import.meta.url);
  let readme = readFileSync(path, 'utf8');
  for (const [name, table] of tables) {
    const start = readme.indexOf(`<!-- options: ${name} -->`);
    const end = readme.indexOf('<!-- /options -->', start);
    if (start < 0 || end < 0) throw new Error(`README.md has no markers for ${name}`);
    readme = readme.slice(0, start) + optionsBlock(name, table) + readme.slice(end + '<!-- /options -->'.length);
  }
  writeFileSync(path, readme);
} else {
  for (const [name, table] of tables) console.log(`${optionsBlock(name, table)}\n`);
}
