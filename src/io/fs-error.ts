/**
 * File-system failures as the one-line errors users get: what could not be done to which path, why
 * in words (with the errno code), and what to do. Used where a command knows the flag behind a path,
 * and by the CLI as the last resort for any such error that reached it untranslated.
 */
import { UserError } from '../errors.ts';

const REASONS: Record<string, [reason: string, fix: string]> = {
  EACCES: ['permission denied', 'check its permissions'],
  EPERM: ['operation not permitted', 'check its permissions'],
  EROFS: ['the file system is read-only', 'use a path on a writable disk'],
  ENOENT: ['no such file or folder', 'check the path'],
  EEXIST: ['something already exists there', 'move it away'],
  ENOTDIR: ['a part of the path is a file, not a folder', 'check the path'],
  EISDIR: ['it is a folder, not a file', 'name a file'],
  ENOSPC: ['no space left on the device', 'free space on that disk'],
  EDQUOT: ['disk quota exceeded', 'free space in your quota'],
  ELOOP: ['too many levels of symbolic links (a symlink loop)', 'fix or remove the link'],
  ENAMETOOLONG: ['the path is too long', 'use a shorter path'],
  EMFILE: ['too many open files', 'raise the limit (ulimit -n)'],
};

const VERBS: Record<string, string> = {
  open: 'open', mkdir: 'create folder', rename: 'rename', unlink: 'delete', rmdir: 'delete', write: 'write', read: 'read',
  scandir: 'list', stat: 'read', lstat: 'read', access: 'access', copyfile: 'copy to', symlink: 'link', fsync: 'write',
};

export interface FsErrorContext {
  /** The flag that named the path, e.g. '--run-dir'. */
  flag?: string;
  /** The path to name when the error carries none (or another one). */
  path?: string;
  /** What to do besides the generic fix, e.g. 'choose another --out'. */
  fix?: string;
}

export function isFsError(e: unknown): e is NodeJS.ErrnoException {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && code in REASONS;
}

/** A UserError for a file-system error (see REASONS); anything else is returned unchanged. */
export function describeFsError(e: unknown, ctx: FsErrorContext = {}): unknown {
  if (e instanceof UserError || !isFsError(e)) return e;
  const code = e.code!;
  const path = e.path ?? ctx.path ?? 'a file';
  const verb = VERBS[e.syscall ?? ''] ?? 'use';
  const [reason, genericFix] = REASONS[code];
  const fix = [genericFix, ctx.fix].filter(Boolean).join(', or ');
  return new UserError(`${ctx.flag ? `${ctx.flag}: ` : ''}cannot ${verb} ${path}: ${reason} (${code}); ${fix}`);
}
