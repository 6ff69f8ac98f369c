import { constants } from 'node:fs';
import { access, chmod, lstat, mkdir, readdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { LanternError } from '../core/errors.js';

/** A file-system failure on `path` as a typed error with what to do. */
export function pathError(err: unknown, path: string, doing: string): LanternError {
  if (LanternError.is(err)) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new LanternError('LA_ERR_PERMISSION_DENIED', `Cannot ${doing} ${path}: ${code === 'EROFS' ? 'the file system is read-only' : 'permission denied'}; choose a path this user owns, or run as its owner`, { cause: err });
  }
  if (code === 'ENOTDIR' || code === 'EEXIST') return new LanternError('LA_ERR_NOT_A_DIRECTORY', `Cannot ${doing} ${path}: it (or a parent) is a file, not a directory`, { cause: err });
  if (code === 'ENOSPC') return new LanternError('LA_ERR_STORE_FULL', `Cannot ${doing} ${path}: disk full`, { cause: err });
  if (code === 'ENOENT' && doing === 'create') return new LanternError('LA_ERR_PATH_UNUSABLE', `Cannot create ${path}: this file system does not allow it (such as /proc); choose a directory on a disk`, { cause: err });
  return new LanternError('LA_ERR_PATH_UNUSABLE', `Cannot ${doing} ${path}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
}

/**
 * Makes sure `dir` is a directory this user can use, creating what is missing of it (mode 0700),
 * one level at a time and only after checking the nearest existing parent: a file in the way, a
 * parent this user may not write, or a file system that refuses (such as /proc, where Node's
 * recursive mkdir never returns) is a typed error, and nothing is created. Returns whether it was
 * created (so a command that then fails can remove it).
 */
export async function ensureDirectory(dir: string): Promise<{ created: string | undefined }> {
  const target = resolve(dir);
  const missing: string[] = [];
  let existing = target;
  for (;;) {
    try {
      const st = await stat(existing);
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(existing) === existing) throw pathError(err, existing === target ? target : `${target} (at ${existing})`, 'use');
      missing.unshift(existing);
      existing = dirname(existing);
    }
  }
  try {
    await access(existing, missing.length ? constants.W_OK | constants.X_OK : constants.R_OK | constants.W_OK | constants.X_OK);
  } catch (err) {
    throw pathError(err, existing, missing.length ? 'create a directory in' : 'use');
  }
  for (const path of missing) {
    try {
      await mkdir(path, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST' && (await stat(path).then((s) => s.isDirectory(), () => false))) continue;
      throw pathError(err, path, 'create');
    }
  }
  return { created: missing[0] };
}

/**
 * Makes `dir` (created if absent) and everything under it private to this user: directories
 * 0700, files 0600 (sockets and symlinks left as they are). A data dir or home holds session keys,
 * password hashes, the account-name ↔ user-id map and device keys. `mkdir` with a mode never
 * changes a directory that exists, and LevelDB creates its files with the process umask. Returns
 * what was tightened, with its mode before, so that the caller can say so.
 */
export async function makePrivate(dir: string): Promise<Array<{ path: string; was: number }>> {
  await ensureDirectory(dir);
  const tightened: Array<{ path: string; was: number }> = [];
  const visit = async (path: string): Promise<void> => {
    const st = await lstat(path);
    const mode = st.mode & 0o777;
    if (st.isDirectory()) {
      if (mode & 0o077) {
        await chmod(path, mode & 0o700);
        tightened.push({ path, was: mode });
      }
      for (const name of await readdir(path)) await visit(join(path, name));
    } else if (st.isFile() && mode & 0o077) {
      await chmod(path, mode & 0o700);
      tightened.push({ path, was: mode });
    }
  };
  try {
    await visit(dir);
  } catch (err) {
    throw pathError(err, dir, 'make private');
  }
  return tightened;
}

/** "tightened PATH from 0755 to 0700" */
export const tightenedText = (t: { path: string; was: number }) => `tightened ${t.path} from 0${t.was.toString(8)} to 0${(t.was & 0o700).toString(8)} (it was readable by other users)`;
