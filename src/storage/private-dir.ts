import { chmod, lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Makes `dir` (created if absent) and everything under it private to this user: directories
 * 0700, files 0600 (sockets and symlinks left as they are). A data dir or home holds session keys,
 * password hashes, the account-name ↔ user-id map and device keys. `mkdir` with a mode never
 * changes a directory that exists, and LevelDB creates its files with the process umask. Returns
 * what was tightened, with its mode before, so that the caller can say so.
 */
export async function makePrivate(dir: string): Promise<Array<{ path: string; was: number }>> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
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
  await visit(dir);
  return tightened;
}

/** "tightened PATH from 0755 to 0700" */
export const tightenedText = (t: { path: string; was: number }) => `tightened ${t.path} from 0${t.was.toString(8)} to 0${(t.was & 0o700).toString(8)} (it was readable by other users)`;
