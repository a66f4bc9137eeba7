import { UserError } from '../errors.ts';

/** Turns a failed read of a user-given file into a one-line error naming it; other errors pass through. */
export function readFailure(e: unknown, file: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new UserError(`${file}: no such file; check the path`);
  if (code === 'EACCES' || code === 'EISDIR') return new UserError(`${file}: cannot be read (${code}); check the path and its permissions`);
  return e;
}
