import test from 'ava';
import { InvalidArgumentError } from 'commander';
import { formatDuration, parseDuration } from './config.js';

test('durations: units, and a bare number is seconds; the help shows defaults the same way', (t) => {
  t.is(parseDuration('500ms'), 500);
  t.is(parseDuration('30s'), 30_000);
  t.is(parseDuration('30'), 30_000);
  t.is(parseDuration('1.5'), 1500);
  t.is(parseDuration('10m'), 600_000);
  t.is(parseDuration('12h'), 43_200_000);
  t.is(parseDuration('30d'), 2_592_000_000);
  for (const bad of ['', 's', '-1s', '1 s', '1y', 'ten']) t.throws(() => parseDuration(bad), { instanceOf: InvalidArgumentError }, bad);
  for (const ms of [500, 1500, 30_000, 60_000, 75_000, 600_000, 3_600_000, 86_400_000, 2_592_000_000]) t.is(parseDuration(formatDuration(ms)), ms, String(ms));
  t.is(formatDuration(60_000), '1m');
  t.is(formatDuration(75_000), '75s');
});
