/**
 * An error the user can fix: its message is one line that names the file, flag or value and the fix.
 * The CLI prints it without a stack trace; anything else is a bug and keeps its stack.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
