/**
 * One process per run directory. Two trainings writing one run would interleave metrics.jsonl and
 * train.log and race for the checkpoints and the model, so `train` and `lr-find` hold
 * `<run-dir>/.lock` while they run: a JSON record of the holder (pid, host, start time), created
 * exclusively (O_EXCL), removed on exit.
 *
 * A lock whose process is gone (same host, pid not alive: a SIGKILL, a power loss) is taken over with a
 * warning. A lock from another host cannot be checked; it is refused, naming the file to delete.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { describeFsError } from './fs-error.ts';

export const LOCK_NAME = '.lock';

export interface LockHolder {
  pid: number;
  host: string;
  started: string;
}

export interface RunLock {
  file: string;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the pid exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as LockHolder;
    return Number.isInteger(h.pid) && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock of `runDir` (created if missing) for this process. `flag` names the run directory in
 * messages; `warn` receives the one-line notice of a stale lock taken over.
 */
export function acquireRunLock(runDir: string, flag: string, warn: (message: string) => void): RunLock {
  const file = join(runDir, LOCK_NAME);
  let isFile = false;
  try {
    isFile = !statSync(runDir).isDirectory();
  } catch {
    // Missing: created below.
  }
  if (isFile) throw new UserError(`${flag} ${runDir} is a file, not a folder; choose another ${flag}`);
  let created: string | undefined;
  try {
    created = mkdirSync(runDir, { recursive: true });
  } catch (e) {
    throw describeFsError(e, { flag, path: runDir, fix: `choose another ${flag}` });
  }
  const me: LockHolder = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw describeFsError(e, { flag, path: file, fix: `choose another ${flag}` });
      const h = readHolder(file);
      if (h && h.host !== me.host) {
        throw new UserError(`${flag} ${runDir} is in use by process ${h.pid} on ${h.host} since ${h.started}; wait for it to finish, choose another ${flag}, or delete ${file} if that process is gone`);
      }
      if (h && h.pid !== process.pid && alive(h.pid)) {
        throw new UserError(`${flag} ${runDir} is in use by process ${h.pid} (started ${h.started}); wait for it to finish or choose another ${flag}`);
      }
      warn(h
        ? `${flag} ${runDir} was locked by process ${h.pid} (started ${h.started}), which is gone; taking the run over`
        : `${flag} ${runDir} has an unreadable lock file ${file} (a crash while taking it); taking the run over`);
      rmSync(file, { force: true });
      continue;
    }
    try {
      writeSync(fd, `${JSON.stringify(me)}\n`);
    } catch (e) {
      closeSync(fd);
      rmSync(file, { force: true });
      throw describeFsError(e, { flag, path: file, fix: `free space or choose another ${flag}` });
    }
    closeSync(fd);
    break;
  }
  let held = true;
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    // Only our own lock: a takeover by another process after we were thought dead must survive.
    if (readHolder(file)?.pid === process.pid) rmSync(file, { force: true });
    // A run that failed before writing anything leaves no empty folder behind.
    if (created) {
      try {
        rmdirSync(runDir);
      } catch {
        // Not empty: the run wrote something, keep it.
      }
    }
  };
  // Also on process.exit() (a second Ctrl-C) and uncaught errors; SIGKILL leaves a stale lock.
  process.on('exit', release);
  return { file, release };
}
