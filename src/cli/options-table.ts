import { PassThrough } from 'node:stream';
import type { Command, Option } from 'commander';
import { envName, layeredOptions, optionName } from './config-layers.js';
import { buildProgram } from './main.js';

/** The commands whose options the README lists (those that run a role). */
export const TABLED_COMMANDS = ['server', 'give', 'get', 'verify'] as const;

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function defaultText(o: Option): string {
  if (o.defaultValueDescription !== undefined) return o.defaultValueDescription;
  if (o.defaultValue === undefined) return '';
  return typeof o.defaultValue === 'object' ? JSON.stringify(o.defaultValue) : String(o.defaultValue);
}

/** A command's options as a Markdown table: the flag, the variable and file key, the default, the meaning. */
export function optionsTable(cmd: Command): string {
  const rows = layeredOptions(cmd).map((o) => `| \`${o.flags}\` | \`${envName(o)}\` / \`${optionName(o)}\` | ${defaultText(o) ? `\`${cell(defaultText(o))}\`` : ''} | ${cell(o.description)} |`);
  return ['| option | variable / config key | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}

/** Each tabled command's table, between the README's markers `<!-- options: NAME -->` and `<!-- /options -->`. */
export async function readmeOptionTables(): Promise<Map<string, string>> {
  const sink = new PassThrough();
  const program = await buildProgram({ stdout: sink, stderr: sink, stdin: new PassThrough(), env: {}, stopSignal: new Promise(() => undefined) }, () => undefined);
  return new Map(TABLED_COMMANDS.map((name) => [name, optionsTable(program.commands.find((c) => c.name() === name)!)]));
}

export const optionsBlock = (name: string, table: string) => `<!-- options: ${name} -->\n${table}\n<!-- /options -->`;
