import { Command, Option } from 'commander';
import { systemClock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import { createLogger } from '../../core/logger.js';
import { controlRequest } from '../../net/control-socket.js';
import type { ControlRequest, Role } from '../../protocol/messages.js';
import { AccountService } from '../../roles/server/accounts.js';
import { dataDirPaths, ensureDataDir } from '../../roles/server/data-dir.js';
import { tightenedText } from '../../storage/private-dir.js';
import { openServerStore, resolveStoreSpec, storeCaOption, storeOption, type StoreSpec } from '../store-spec.js';
import { parsePositiveInt } from '../config.js';
import { obtainPassword, writeJson, writeLine, type Io } from '../io.js';

/**
 * Runs an account operation: on Redis directly (shared by every server process), else through the
 * server running on the data dir, or directly on its LevelDB when none runs.
 */
async function runAccountOp(flags: { dataDir?: string; store: StoreSpec; storeCa?: string }, request: ControlRequest): Promise<Record<string, unknown>> {
  if (flags.store.kind === 'level') {
    if (!flags.dataDir) throw new LanternError('LA_ERR_USAGE', '--data-dir is required with the embedded store');
    const viaServer = await controlRequest(dataDirPaths(flags.dataDir).control, request);
    if (viaServer) return viaServer;
    // No server runs on it: this command opens the store itself, in a data dir made private first.
    for (const t of await ensureDataDir(flags.dataDir)) process.stderr.write(`warning: ${tightenedText(t)}\n`);
  }
  // The same store (and notifier) a server would open: on Redis a revocation is announced over
  // pub/sub, so whichever instance holds a poll of the revoked device ends it at once.
  const { store, notifier } = await openServerStore(await resolveStoreSpec(flags), flags.dataDir ?? '');
  try {
    const accounts = new AccountService({ store, notifier, clock: systemClock, logger: createLogger({ level: 'warn' }) });
    return request.op === 'account.add'
      ? await accounts.add(request.name, request.role, request.password)
      : await accounts.revoke(request.name, request.deviceId);
  } finally {
    await notifier.close();
    await store.close();
  }
}


export function accountCommand(io: Io, done: (code: number) => void): Command {
  const account = new Command('account').description('Manage accounts on a server data dir (works whether or not the server runs)');
  account
    .command('add <name>')
    .description('Create an account; the password is read from stdin')
    .option('--data-dir <dir>', 'the server data dir (with the embedded store)')
    .addOption(storeOption())
    .addOption(storeCaOption())
    .addOption(new Option('--role <role>', 'user or verifier').choices(['user', 'verifier']).default('user'))
    .option('--password-stdin', 'read the password from stdin (scripts); without it, it is asked for on the terminal')
    .option('--json', 'print the result as JSON')
    .action(async (name: string, flags: { dataDir?: string; store: StoreSpec; storeCa?: string; role: Role; passwordStdin?: boolean; json?: boolean }) => {
      const password = await obtainPassword(io, flags.passwordStdin);
      const result = await runAccountOp(flags, { op: 'account.add', name, role: flags.role, password });
      if (flags.json) writeJson(io.stdout, result);
      else writeLine(io.stdout, `account ${name} added (role ${flags.role}, user id ${String(result['userId'])})`);
      done(0);
    });
  account
    .command('revoke <name>')
    .description('Revoke one device (--device) or the whole account and all its devices')
    .option('--data-dir <dir>', 'the server data dir (with the embedded store)')
    .addOption(storeOption())
    .addOption(storeCaOption())
    .option('--device <n>', 'only this device', parsePositiveInt)
    .option('--json', 'print the result as JSON')
    .action(async (name: string, flags: { dataDir?: string; store: StoreSpec; storeCa?: string; device?: number; json?: boolean }) => {
      const result = await runAccountOp(flags, {
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
