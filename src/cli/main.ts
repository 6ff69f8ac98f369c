import { Command, CommanderError } from 'commander';
import { LanternError } from '../core/errors.js';
import { accountCommand } from './commands/account.js';
import { loginCommand, whoamiCommand } from './commands/login.js';
import { adsCommand, contactsCommand } from './commands/contacts.js';
import { getCommand } from './commands/get.js';
import { peersCommand } from './commands/peers.js';
import { verifyCommand } from './commands/verify.js';
import { giveCommand, statusCommand, ticketCommand } from './commands/give.js';
import { safetyNumberCommand, trustCommand } from './commands/identity.js';
import { inboxCommand, sendCommand } from './commands/messages.js';
import { serverCommand } from './commands/server.js';
import { processIo, writeLine, type Io } from './io.js';

/** Builds the program; each command calls `done` with its exit code. */
export function buildProgram(io: Io, done: (code: number) => void): Command {
  const program = new Command('lantern-agent')
    .description('Peer agent for a censorship-circumvention network: signaling server, give/get proxies, verifier')
    .version('0.1.0')
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();
  for (const make of [serverCommand, accountCommand, loginCommand, whoamiCommand, sendCommand, inboxCommand, trustCommand, safetyNumberCommand, giveCommand, ticketCommand, statusCommand, contactsCommand, adsCommand, getCommand, peersCommand, verifyCommand]) {
    const cmd = make(io, done);
    cmd.exitOverride();
    for (const sub of cmd.commands) sub.exitOverride();
    program.addCommand(cmd);
  }
  return program;
}

/** Runs the CLI; resolves with the exit code (the only caller of process.* lives in bin/). */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  let code = 0;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help' ? 0 : 2;
    }
    if (LanternError.is(err)) {
      writeLine(io.stderr, `error ${err.code}: ${err.message}`);
      return err.exitCode;
    }
    writeLine(io.stderr, `error LA_ERR_INTERNAL: ${(err as Error)?.stack ?? String(err)}`);
    return 1;
  }
}
