import { readFile } from 'node:fs/promises';
import test from 'ava';
import { errorsTable } from '../../scripts/errors-table.js';
import { LanternError, errorCatalogue, isErrorCode } from './errors.js';

test('every code is LA_ERR_*, unique, with an HTTP status and an exit code', (t) => {
  for (const [code, e] of Object.entries(errorCatalogue)) {
    t.regex(code, /^LA_ERR_[A-Z0-9_]+$/);
    t.true(e.status >= 400 && e.status < 600, code);
    t.true(Number.isInteger(e.exit) && e.exit >= 1 && e.exit <= 6, code);
    t.true(e.message.length > 0);
  }
  const err = new LanternError('LA_ERR_QUEUE_FULL');
  t.is(err.status, 507);
  t.is(err.exitCode, 5);
  t.true(LanternError.is(err, 'LA_ERR_QUEUE_FULL'));
  t.false(isErrorCode('LA_ERR_NOPE'));
});

test('the README lists exactly the catalogue', async (t) => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  t.true(readme.includes(errorsTable()), 'README error table differs; regenerate it with `npx tsx scripts/errors-table.ts --write`');
  const listed = [...readme.matchAll(/`(LA_ERR_[A-Z0-9_]+)`/g)].map((m) => m[1]);
  for (const code of listed) t.true(isErrorCode(code), `${code} is in the README but not in the catalogue`);
});
