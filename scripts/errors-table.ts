// Prints the README's error table from the catalogue: `npx tsx scripts/errors-table.ts`.
import { errorCatalogue } from '../src/core/errors.js';

export function errorsTable(): string {
  const rows = Object.entries(errorCatalogue).map(([code, e]) => `| \`${code}\` | ${e.status} | ${e.exit} | ${e.message} |`);
  return ['| code | HTTP status | exit code | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(errorsTable());
