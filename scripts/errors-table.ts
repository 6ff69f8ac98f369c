// The README's error table, from the catalogue. `npx tsx scripts/errors-table.ts` prints it;
// `--write` puts it into README.md in place of the current table.
import { readFileSync, writeFileSync } from 'node:fs';
import { errorCatalogue } from '../src/core/errors.js';

export function errorsTable(): string {
  const rows = Object.entries(errorCatalogue).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.exit} | ${e.message} |`);
  return ['| code | HTTP status | exit code | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const path = new URL('../README.md', import.meta.url);
    const readme = readFileSync(path, 'utf8');
    const start = readme.indexOf('| code | HTTP status | exit code | meaning |');
    const end = readme.indexOf('\n\n', start);
    writeFileSync(path, readme.slice(0, start) + errorsTable() + readme.slice(end));
  } else {
    console.log(errorsTable());
  }
}
