import { Command, Option } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { controlRequest } from '../../net/control-socket.js';
import type { ControlRequest, Role } from '../../protocol/messages.js';
import { AccountService } from '../../roles/server/accounts.js';
import { dataDirPaths } from '../../roles/server/data-dir.js';
import { LevelServerStore } from '../../storage/level-server-store.js';
import { parsePositiveInt } from '../config.js';
import { readPassword, writeJson, writeLine, type Io } from '../io.js';

/** Runs an account operation through the running server, or directly on the data dir when none runs. */
async function runAccountOp(dataDir: string, request: ControlRequest): Promise<Record<string, unknown>> {
  const paths = dataDirPaths(dataDir);
  const viaServer = await controlRequest(paths.control, request);
  if (viaServer) return viaServer;
  const store = new LevelServerStore({ location: paths.store });
  await store.open();
  try {
    const accounts = new AccountService({ store, clock: systemClock, logger: createLogger({ level: 'warn' }) });
    return request.op === 'account.add'
      ? await accounts.add(request.name, request.role, request.password)
      : await accounts.revoke(request.name, request.deviceId);
  } finally {
    await store.close();
  }
}

export function accountCommand(io: Io, done: (code: number) => void): Command {
  const account = new Command('account').description('Manage accounts on a server data dir (works whether or not the server runs)');
  account
    .command('add <name>')
    .description('Create an account; the password is read from stdin')
    .requiredOption('--data-dir <dir>', 'the server data dir')
    .addOption(new Option('--role <role>', 'user or verifier').choices(['user', 'verifier']).default('user'))
    .option('--password-stdin', 'read the password from stdin (required)')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, flags: { dataDir: string; role: Role; passwordStdin?: boolean; json?: boolean }) => {
      if (!flags.passwordStdin) throw new LanternError('LA_ERR_USAGE', 'pass the password on stdin with --password-stdin');
      const password = await readPassword(io.stdin);
      const result = await runAccountOp(flags.dataDir, { op: 'account.add', name, role: flags.role, password });
      if (flags.json) writeJson(io.stdout, result);
      else writeLine(io.stdout, `account ${name} added (role ${flags.role}, user id ${String(result['userId'])})`);
      done(0);
    });
  account
    .command('revoke <name>')
    .description('Revoke one device (--device) or the whole account and all its devices')
    .requiredOption('--data-dir <dir>', 'the server data dir')
    .option('--device <n>', 'only this device', parsePositiveInt)
    .option('--json', 'print the result as JSON')
    .action(async (name: string, flags: { dataDir: string; device?: number; json?: boolean }) => {
      const result = await runAccountOp(flags.dataDir, {
        op: 'account.revoke',
        name,
        ...(flags.device !== undefined ? { deviceId: flags.device } : {}),
      });
      if (flags.json) writeJson(io.stdout, result);
      else writeLine(io.stdout, `revoked ${name}: devices ${(result['revokedDevices'] as number[]).join(', ') || 'none'}`);
      done(0);
    });
  return account;
}
