import { readFile } from 'node:fs/promises';
import { dirname, extname, resolve } from 'node:path';
import { InvalidArgumentError, type Command, type Option } from 'commander';
import { z } from 'zod';
import { LanternError } from '../core/errors.js';
import { writeJson, type Io } from './io.js';

/**
 * Options from four layers, each above the last: the command's defaults, a config file
 * (`--config FILE`, TOML or YAML, or $LANTERN_CONFIG), environment variables
 * (`LANTERN_<OPTION>`: `--rate-pair` is LANTERN_RATE_PAIR) and flags. The command's commander
 * options are the one schema: a file key or a variable is the option's long name, and its value
 * goes through the option's own parser (a bare number for a duration is seconds, as on the
 * command line). Unknown keys, and values the parser refuses, are LA_ERR_CONFIG naming the key.
 */

/** Where an option's value came from. */
export type Source = 'default' | 'config' | 'env' | 'cli';

/** The options a config file and the environment may set: every option of the command but these. */
const NOT_LAYERED = new Set(['help', 'version', 'config', 'print-config']);

/** A config file: option names to scalars (or lists, for options that take several values). */
const ConfigFile = z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.array(z.union([z.string(), z.number()]))]));

/** An option's name in files and variables: its long flag without dashes (and without `no-`). */
export const optionName = (o: Option) => (o.long ?? '').replace(/^--(no-)?/, '');
/** Its environment variable. */
export const envName = (o: Option) => o.envVar ?? `LANTERN_${optionName(o).toUpperCase().replace(/-/g, '_')}`;
/** Whether it takes a path (resolved against the config file's directory when given there). */
const isPath = (o: Option) => /<(file|dir)>/.test(o.flags);
/** Whether it is a switch (no value on the command line). */
const isSwitch = (o: Option) => !o.required && !o.optional;

/** The options a command reads from files and the environment. */
export function layeredOptions(cmd: Command): Option[] {
  return cmd.options.filter((o) => o.long && !NOT_LAYERED.has(optionName(o)));
}

/** A value as --print-config shows it: passwords, tokens and URL credentials masked. */
function redact(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(/(\/\/)[^/@\s]*@/, '$1***@');
  if (Array.isArray(value)) return value.map(redact);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, /password|token|secret/i.test(k) && v !== undefined ? '***' : redact(v)]));
  }
  return value;
}

/** A value from a file or a variable, through the option's own parser. */
function convert(o: Option, raw: unknown, where: string, baseDir?: string): unknown {
  const fail = (why: string) => new LanternError('LA_ERR_CONFIG', `${where}: ${why}`);
  if (isSwitch(o)) {
    if (typeof raw === 'boolean') return raw;
    const text = String(raw).toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(text)) return true;
    if (['false', '0', 'no', 'off'].includes(text)) return false;
    throw fail(`expected true or false, not ${JSON.stringify(raw)}`);
  }
  const one = (value: unknown): unknown => {
    if (typeof value !== 'string' && typeof value !== 'number') throw fail(`expected a value, not ${JSON.stringify(value)}`);
    let text = String(value);
    if (baseDir !== undefined && isPath(o)) text = resolve(baseDir, text);
    if (o.argChoices && !o.argChoices.includes(text)) throw fail(`expected one of ${o.argChoices.join(', ')}, not ${JSON.stringify(text)}`);
    try {
      return o.parseArg ? o.parseArg(text, undefined) : text;
    } catch (err) {
      if (err instanceof InvalidArgumentError || LanternError.is(err)) throw fail(err.message);
      throw err;
    }
  };
  if (o.variadic) return (Array.isArray(raw) ? raw : String(raw).split(/[\s,]+/).filter(Boolean)).map(one);
  if (Array.isArray(raw)) throw fail('expected one value, not a list');
  return one(raw);
}

async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new LanternError('LA_ERR_CONFIG', `Cannot read the config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  // Each parser is loaded only when a file needs it: most runs read no config file.
  const yaml = ['.yaml', '.yml'].includes(extname(path).toLowerCase());
  const parse: (text: string) => unknown = yaml ? (await import('yaml')).parse : (await import('smol-toml')).parse;
  try {
    parsed = parse(text);
  } catch (err) {
    throw new LanternError('LA_ERR_CONFIG', `The config file ${path} is not valid ${extname(path).toLowerCase() === '.toml' ? 'TOML' : 'TOML or YAML'}: ${(err as Error).message.split('\n')[0]}`, { cause: err });
  }
  const shape = ConfigFile.safeParse(parsed ?? {});
  if (!shape.success) {
    const issue = shape.error.issues[0]!;
    throw new LanternError('LA_ERR_CONFIG', `The config file ${path}: ${issue.path.length ? `key ${issue.path.join('.')}: ` : ''}expected option names with plain values (no tables)`);
  }
  return shape.data;
}

/**
 * Gives a command the layers: `--config FILE`, `--print-config` (the merged options and where
 * each came from, as JSON, and exit), and the file and environment applied before the action
 * runs. `required` options are checked once every layer is in (so a file may give them).
 */
export function withConfigLayers(cmd: Command, io: Io, options: { required?: string[] } = {}): Command {
  cmd.option('--config <file>', 'read options from this TOML or YAML file (keys are option names: listen = "127.0.0.1:8443"); flags and LANTERN_* variables override it (env: LANTERN_CONFIG)');
  cmd.option('--print-config', 'print the options in effect, and where each came from (default, config, env, cli), as JSON; then exit');
  cmd.hook('preAction', async (command) => {
    const layered = layeredOptions(command);
    const unset = (o: Option) => {
      const source = command.getOptionValueSource(o.attributeName());
      return source === undefined || source === 'default';
    };
    for (const o of layered) {
      const name = envName(o);
      // Options commander reads from the environment itself (LANTERN_STORE) are left to it.
      if (o.envVar || !unset(o) || io.env[name] === undefined) continue;
      command.setOptionValueWithSource(o.attributeName(), convert(o, io.env[name], `environment variable ${name}`), 'env');
    }
    const file = (command.getOptionValue('config') as string | undefined) ?? io.env['LANTERN_CONFIG'];
    if (file) {
      const values = await readConfigFile(file);
      const byName = new Map(layered.map((o) => [optionName(o), o]));
      for (const [key, raw] of Object.entries(values)) {
        const o = byName.get(key);
        if (!o) throw new LanternError('LA_ERR_CONFIG', `The config file ${file}: unknown key "${key}" (keys are the long option names of \`${command.name()}\`, without dashes)`);
        if (unset(o)) command.setOptionValueWithSource(o.attributeName(), convert(o, raw, `config file ${file}, key ${key}`, dirname(resolve(file))), 'config');
      }
    }
    for (const flag of options.required ?? []) {
      const o = layered.find((x) => x.long === flag)!;
      if (command.getOptionValue(o.attributeName()) === undefined) {
        throw new LanternError('LA_ERR_USAGE', `${flag} is required (as a flag, ${envName(o)}, or "${optionName(o)}" in the config file)`);
      }
    }
    if (command.getOptionValue('printConfig')) {
      const effective: Record<string, { value: unknown; source: Source }> = {};
      for (const o of layered) {
        const key = o.attributeName();
        const value = command.getOptionValue(key);
        if (value !== undefined) effective[optionName(o)] = { value: redact(value), source: (command.getOptionValueSource(key) ?? 'default') as Source };
      }
      writeJson(io.stdout, effective);
      // The action does not run: the options were the answer.
      command.action(() => undefined);
    }
  });
  return cmd;
}
