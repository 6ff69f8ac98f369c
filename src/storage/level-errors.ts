import { LanternError } from '../core/errors.js';

/** Translates a LevelDB failure into a typed error (locked directory, disk full, I/O, closed). */
export function levelError(err: unknown, what: string): LanternError {
  if (err instanceof LanternError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const codes = [e?.code, e?.cause?.code];
  const text = `${e?.message ?? ''} ${e?.cause?.message ?? ''}`;
  // Before the lock: an unreadable directory fails on its LOCK file with "Permission denied".
  if (codes.includes('EACCES') || codes.includes('EPERM') || /Permission denied|EACCES|Read-only file system|EROFS/i.test(text)) {
    return new LanternError('LA_ERR_PERMISSION_DENIED', `${what}: this user may not read or write it (${text.trim()}); run as its owner, or fix its permissions`, { cause: err });
  }
  if (codes.includes('LEVEL_LOCKED') || /lock/i.test(text)) {
    return new LanternError('LA_ERR_STORE_LOCKED', `${what}: data directory is in use by another process`, { cause: err });
  }
  if (/No space left|ENOSPC/i.test(text)) return new LanternError('LA_ERR_STORE_FULL', `${what}: disk full`, { cause: err });
  if (/corrupt/i.test(text)) return new LanternError('LA_ERR_STORE_CORRUPT', `${what}: ${text.trim()}`, { cause: err });
  return new LanternError('LA_ERR_STORE_UNAVAILABLE', `${what}: ${text.trim() || String(err)}`, { cause: err });
}
