import { Command, CommanderError } from 'commander';
import { LanternError } from '../core/errors.js';
import { keepFreedHeap } from '../core/malloc-tuning.js';
import { accountCommand } from './commands/account.js';
import { loginCommand, whoamiCommand } from './commands/login.js';
import { adsCommand, contactsCommand } from './commands/contacts.js';
import { getCommand } from './commands/get.js';
import { peersCommand } from './commands/peers.js';
import { verifyCommand } from './commands/verify.js';
import { giveCommand, statusCommand, ticketCommand } from './commands/give.js';
import { safetyNumberCommand, trustCommand } from './commands/identity.js';
import { inboxCommand, messagesCommand, sendCommand } from './commands/messages.js';
import { serverCommand } from './commands/server.js';
import { demoCommand } from './commands/demo.js';
import { completionCommand } from './commands/completion.js';
import { doctorCommand } from './commands/doctor.js';
import { processIo, writeLine, type Io } from './io.js';
import { versionText } from './version.js';

/** Builds the program; each command calls `done` with its exit code. */
export function buildProgram(io: Io, done: (code: number) => void): Command {
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
  for (const make of [serverCommand, accountCommand, loginCommand, whoamiCommand, sendCommand, inboxCommand, messagesCommand, trustCommand, safetyNumberCommand, giveCommand, ticketCommand, statusCommand, contactsCommand, adsCommand, getCommand, peersCommand, verifyCommand, doctorCommand]) {
    add(make(io, done));
  }
  // The demo runs the other commands in this process, each with its own Io.
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
  const program = buildProgram(io, (c) => (code = c));
  try {
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
