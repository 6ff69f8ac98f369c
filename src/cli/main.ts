import { Command, CommanderError } from 'commander';
import { LanternError } from '../core/errors.js';
import { keepFreedHeap } from '../core/malloc-tuning.js';
import { processIo, writeLine, type Io } from './io.js';
import { versionText } from './version.js';

type MakeCommand = (io: Io, done: (code: number) => void) => Command;

/**
 * Each command's module, loaded only when that command runs: a command loads its own role and
 * libraries, not every other one's (`inbox` needs neither the server's nor give's). Listed in the
 * order of `--help`.
 */
const COMMANDS: ReadonlyArray<readonly [name: string, load: () => Promise<MakeCommand>]> = [
  ['server', async () => (await import('./commands/server.js')).serverCommand],
  ['account', async () => (await import('./commands/account.js')).accountCommand],
  ['login', async () => (await import('./commands/login.js')).loginCommand],
  ['whoami', async () => (await import('./commands/login.js')).whoamiCommand],
  ['send', async () => (await import('./commands/messages.js')).sendCommand],
  ['inbox', async () => (await import('./commands/messages.js')).inboxCommand],
  ['messages', async () => (await import('./commands/messages.js')).messagesCommand],
  ['trust', async () => (await import('./commands/identity.js')).trustCommand],
  ['safety-number', async () => (await import('./commands/identity.js')).safetyNumberCommand],
  ['give', async () => (await import('./commands/give.js')).giveCommand],
  ['ticket', async () => (await import('./commands/give.js')).ticketCommand],
  ['status', async () => (await import('./commands/give.js')).statusCommand],
  ['contacts', async () => (await import('./commands/contacts.js')).contactsCommand],
  ['ads', async () => (await import('./commands/contacts.js')).adsCommand],
  ['get', async () => (await import('./commands/get.js')).getCommand],
  ['peers', async () => (await import('./commands/peers.js')).peersCommand],
  ['verify', async () => (await import('./commands/verify.js')).verifyCommand],
  ['doctor', async () => (await import('./commands/doctor.js')).doctorCommand],
];

/**
 * Builds the program; each command calls `done` with its exit code. With `only` (a command's
 * name) just that command is loaded, which is all that parsing its arguments needs.
 */
export async function buildProgram(io: Io, done: (code: number) => void, only?: string): Promise<Command> {
  const output = {
    writeOut: (s: string) => io.stdout.write(s),
    writeErr: (s: string) => io.stderr.write(s),
    // commander's own parse errors in the documented form: `error LA_ERR_USAGE: …`.
    outputError: (s: string, write: (s: string) => void) => write(s.replace(/^error: /, 'error LA_ERR_USAGE: ')),
  };
  const program = new Command('lantern-agent')
    .description('Peer agent for a censorship-circumvention network: signaling server, give/get proxies, verifier')
    .version(versionText(), '-V, --version', 'print the version, the protocol version, libsignal and the git commit')
    .showHelpAfterError('(add --help for usage)')
    .configureOutput(output)
    .exitOverride();
  // addCommand does not pass settings down: each command (and subcommand) gets them here.
  const add = (cmd: Command) => {
    for (const c of [cmd, ...cmd.commands]) c.exitOverride().configureOutput(output).showHelpAfterError(`(run \`lantern-agent ${c === cmd ? c.name() : `${cmd.name()} ${c.name()}`} --help\` for usage)`);
    program.addCommand(cmd);
  };
  const chosen = COMMANDS.filter(([name]) => only === undefined || name === only);
  for (const make of await Promise.all(chosen.map(([, load]) => load()))) add(make(io, done));
  if (only !== undefined) return program;
  // The demo runs the other commands in this process, each with its own Io.
  const [{ demoCommand }, { completionCommand }] = await Promise.all([import('./commands/demo.js'), import('./commands/completion.js')]);
  add(demoCommand(io, done, (argv, subIo) => main(argv, subIo)));
  add(completionCommand(io, done, () => program));
  return program;
}

/** Runs the CLI; resolves with the exit code (the only caller of process.* lives in bin/). */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  let code = 0;
  // Proxying roles move gigabytes through 64 KiB read buffers: see malloc-tuning.ts.
  keepFreedHeap();
  // --debug (anywhere) or LANTERN_DEBUG=1: stack traces for unexpected errors.
  const debug = argv.includes('--debug') || io.env['LANTERN_DEBUG'] === '1';
  try {
    // The command named first loads alone; anything else (help, version, demo, completion, a
    // mistyped name) gets the whole program.
    const named = argv[2];
    const program = await buildProgram(io, (c) => (code = c), COMMANDS.some(([name]) => name === named) ? named : undefined);
    await program.parseAsync(argv.filter((a) => a !== '--debug'));
    // A role stopped with Ctrl-C ends as a shell expects of an interrupted command.
    return code === 0 && io.stoppedBy?.() === 'SIGINT' ? 130 : code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2;
    }
    if (LanternError.is(err)) {
      writeLine(io.stderr, `error ${err.code}: ${err.message}`);
      if (debug && err.cause) writeLine(io.stderr, String((err.cause as Error)?.stack ?? err.cause));
      return err.exitCode;
    }
    const e = err as Error | undefined;
    writeLine(io.stderr, `error LA_ERR_INTERNAL: ${debug ? (e?.stack ?? String(err)) : `${e?.message ?? String(err)} (a bug: run again with --debug for the stack trace, and report it)`}`);
    return 1;
  }
}
