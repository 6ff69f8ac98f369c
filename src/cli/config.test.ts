import { PassThrough } from 'node:stream';
import test from 'ava';
import { InvalidArgumentError } from 'commander';
import { formatDuration, parseDuration } from './config.js';
import { buildProgram } from './main.js';

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

test('every option of every command shows its default as it would be typed, and every duration takes units or bare seconds', async (t) => {
  const sink = new PassThrough();
  const program = await buildProgram({ stdout: sink, stderr: sink, stdin: new PassThrough(), env: {}, stopSignal: new Promise(() => undefined) }, () => undefined);
  const commands = program.commands.flatMap((c) => [c, ...c.commands]);
  let durations = 0;
  for (const command of commands) {
    for (const option of command.options) {
      const where = `${command.name()} ${option.long}`;
      const shown = option.defaultValueDescription ?? (option.defaultValue === undefined ? undefined : JSON.stringify(option.defaultValue));
      if (typeof option.defaultValue === 'object' && option.defaultValue !== null) t.truthy(option.defaultValueDescription, `${where}: an object default needs its typed form`);
      t.false(/^\d{5,}$/.test(String(shown)) && /duration/.test(option.flags), `${where}: a duration default in milliseconds`);
      t.false(/<seconds>|<ms>/.test(option.flags), `${where}: durations are <duration>`);
      if (!/<duration>/.test(option.flags)) continue;
      durations++;
      if (shown !== undefined) t.regex(shown, /^\d+(\.\d+)?(ms|s|m|h|d)$/, where);
      const parse = option.parseArg as (value: string, previous: unknown) => number;
      t.is(parse('30', undefined), 30_000, `${where} takes bare seconds`);
      t.is(parse('500ms', undefined), 500, `${where} takes units`);
    }
  }
  t.true(durations >= 20, `${durations} duration options`);
});
