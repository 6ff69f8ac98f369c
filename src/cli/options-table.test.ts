import { readFile } from 'node:fs/promises';
import test from 'ava';
import { optionsBlock, readmeOptionTables } from './options-table.js';

test('the README lists every option of server, give, get and verify as the commands define them', async (t) => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  for (const [name, table] of await readmeOptionTables()) {
    t.true(readme.includes(optionsBlock(name, table)), `README option table for ${name} differs; regenerate it with \`npx tsx scripts/options-table.ts --write\``);
    t.regex(table, /`--log-level <level>`/, `${name} has rows`);
  }
});
