/**
 * Crash-safe writes: a reader (or the next run after a crash, power loss or kill) sees either the
 * previous content or the complete new one, never a torn file.
 *
 * Files: write `<name>.tmp-<pid>-<random>` in the same directory, fsync it, rename it over the
 * target (atomic on POSIX), then fsync the directory so the rename itself survives power loss.
 *
 * Directories (`writeDirAtomic`): POSIX cannot atomically replace a non-empty directory, so the new
 * set is built and fsynced in `<dir>.tmp-<pid>`, then swapped in with two renames:
 * `<dir>` → `<dir>.old-<pid>`, `<dir>.tmp-<pid>` → `<dir>`. The exact guarantee:
 *  - every file under `<dir>` is complete; one lookup of `<dir>` resolves to the whole old set or
 *    the whole new set, never a mixture;
 *  - between the two renames (microseconds) `<dir>` does not exist: a reader that gets ENOENT there
 *    should retry or call `recoverAtomicDir`;
 *  - a reader that opens several files by path at different times can straddle a swap; use
 *    `readDirConsistent` to get the files of one set;
 *  - after a crash, `recoverAtomicDir` (run first by every `writeDirAtomic`) restores `<dir>`:
 *    a crash between the renames rolls forward to the new set (it was complete and fsynced before
 *    the first rename), any earlier crash leaves the old set and deletes the partial one.
 * Leftovers are only touched when the process whose pid they carry is gone, so writers in
 * different processes do not delete each other's work (the last swap wins); within one process,
 * write a given directory from one call at a time.
 *
 * Test hook: with env ORT_DANN_TEST_KILL_DURING_WRITE=<substring>, the process SIGKILLs itself
 * halfway through writing any file whose target path contains <substring>; for directories the
 * target `<dir>#swap` is also matched, killing between the two renames.
 */
import fs from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { UserError } from '../errors.ts';

/** File content: text (UTF-8), bytes, or chunks written in order without being joined. */
export type WriteData = string | Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

export interface WriteOptions {
  /** Permission bits for a new file (before umask); default 0o666. */
  mode?: number;
}

export const KILL_ENV = 'ORT_DANN_TEST_KILL_DURING_WRITE';

function killRequested(target: string): boolean {
  const want = process.env[KILL_ENV];
  return !!want && target.includes(want);
}

function dieNow(): never {
  process.kill(process.pid, 'SIGKILL');
  // SIGKILL is delivered before kill() returns for the calling process; this only satisfies `never`.
  throw new Error('SIGKILL was not delivered');
}

/** Turns the errors a user can fix into one-line UserErrors naming `target`; others pass through. */
function describeWriteError(e: unknown, target: string): unknown {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  const where = dirname(target);
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new UserError(`cannot write ${target}: no space left on the device (${code}); free space in ${where} or choose another output path (any previous ${basename(target)} is unchanged)`);
    case 'EROFS':
      return new UserError(`cannot write ${target}: the file system is read-only (${code}); choose an output path on a writable disk (any previous ${basename(target)} is unchanged)`);
    case 'EACCES':
    case 'EPERM':
      return new UserError(`cannot write ${target}: permission denied (${code}); make ${where} writable or choose another output path (any previous ${basename(target)} is unchanged)`);
    case 'ENOENT':
    case 'ENOTDIR':
      return new UserError(`cannot write ${target}: folder ${where} does not exist (${code}); create it or choose another output path`);
    default:
      return e;
  }
}

function toChunks(data: WriteData): Iterable<Uint8Array> | AsyncIterable<Uint8Array> {
  if (typeof data === 'string') return [Buffer.from(data, 'utf8')];
  if (data instanceof Uint8Array) return [data];
  return data;
}

async function writeAll(fh: fs.FileHandle, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await fh.write(bytes, done, bytes.length - done);
    done += bytesWritten;
  }
}

/** Creates `file` (which must not exist), writes `data`, fsyncs and closes it. */
async function writeNewFile(file: string, target: string, data: WriteData, mode: number): Promise<void> {
  const fh = await fs.open(file, 'wx', mode);
  try {
    const kill = killRequested(target);
    for await (const chunk of toChunks(data)) {
      if (kill) {
        await writeAll(fh, chunk.subarray(0, chunk.length >> 1));
        dieNow();
      }
      await writeAll(fh, chunk);
    }
    if (kill) dieNow();
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  // Windows cannot open a directory for fsync; its renames are already journaled by NTFS.
  if (process.platform === 'win32') return;
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Atomically replaces (or creates) `target` with `data`; see the module comment. */
export async function writeFileAtomic(target: string, data: WriteData, opts: WriteOptions = {}): Promise<void> {
  const dir = dirname(target);
  const tmp = join(dir, `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeNewFile(tmp, target, data, opts.mode ?? 0o666);
    await fs.rename(tmp, target);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw describeWriteError(e, target);
  }
  try {
    await fsyncDir(dir);
  } catch (e) {
    throw describeWriteError(e, target);
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the pid exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** rename() that tolerates a concurrent recoverer having moved `from` already. */
async function renameIfPresent(from: string, to: string): Promise<boolean> {
  try {
    await fs.rename(from, to);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/**
 * Repairs what a crashed `writeDirAtomic` of `dir` left behind (see the module comment). Safe to
 * call at any time: leftovers of live processes are not touched.
 */
export async function recoverAtomicDir(dir: string): Promise<void> {
  const parent = dirname(dir);
  const name = basename(dir);
  let names: string[];
  try {
    names = await fs.readdir(parent);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const leftovers = new Map<number, { tmp?: string; old?: string }>();
  for (const entry of names) {
    const m = entry.startsWith(name) ? /^\.(tmp|old)-(\d+)$/.exec(entry.slice(name.length)) : null;
    if (!m || pidAlive(Number(m[2]))) continue;
    const slot = leftovers.get(Number(m[2])) ?? {};
    slot[m[1] as 'tmp' | 'old'] = join(parent, entry);
    leftovers.set(Number(m[2]), slot);
  }
  let restored = false;
  for (const { tmp, old } of leftovers.values()) {
    if (!(await exists(dir))) {
      // With both present the writer died between its two renames, and its new set was complete
      // and fsynced before the first one: roll forward. With only `old`, put the old set back.
      if (tmp && old) restored = await renameIfPresent(tmp, dir);
      else if (old) restored = await renameIfPresent(old, dir);
    }
    for (const p of [tmp, old]) if (p) await fs.rm(p, { recursive: true, force: true });
  }
  if (restored) await fsyncDir(parent);
}

function checkFileName(name: string): void {
  if (!name || name === '.' || name === '..' || /[/\\]/.test(name)) {
    throw new Error(`writeDirAtomic: "${name}" is not a plain file name`);
  }
}

/**
 * Atomically replaces (or creates) directory `dir` with exactly `files` (name → content, plain
 * names only); see the module comment for the guarantee.
 */
export async function writeDirAtomic(dir: string, files: Iterable<[string, WriteData]> | Record<string, WriteData>, opts: WriteOptions = {}): Promise<void> {
  const entries = Symbol.iterator in files ? [...(files as Iterable<[string, WriteData]>)] : Object.entries(files);
  entries.forEach(([name]) => checkFileName(name));
  await recoverAtomicDir(dir);
  const parent = dirname(dir);
  const tmp = `${dir}.tmp-${process.pid}`;
  const old = `${dir}.old-${process.pid}`;
  try {
    // Stale folders of a dead process that had our pid (recoverAtomicDir skips our own pid).
    await fs.rm(tmp, { recursive: true, force: true });
    if (await exists(dir)) await fs.rm(old, { recursive: true, force: true });
    await fs.mkdir(tmp);
    for (const [name, data] of entries) await writeNewFile(join(tmp, name), join(dir, name), data, opts.mode ?? 0o666);
    await fsyncDir(tmp);
  } catch (e) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw describeWriteError(e, dir);
  }
  let movedOld = false;
  try {
    if (await exists(dir)) {
      await fs.rename(dir, old);
      movedOld = true;
      if (killRequested(`${dir}#swap`)) dieNow();
    }
    await fs.rename(tmp, dir);
    await fsyncDir(parent);
  } catch (e) {
    if (movedOld && !(await exists(dir))) await fs.rename(old, dir);
    await fs.rm(tmp, { recursive: true, force: true });
    throw describeWriteError(e, dir);
  }
  // The swap is done; a failed cleanup only leaves a folder that the next recovery deletes.
  if (movedOld) await fs.rm(old, { recursive: true, force: true }).catch(() => undefined);
}

async function dirIdentity(dir: string): Promise<string | undefined> {
  try {
    const st = await fs.stat(dir, { bigint: true });
    // A rename changes the ctime of the moved directory, so a swapped-in set differs even if the
    // file system reuses the inode number of a deleted one.
    return `${st.dev}:${st.ino}:${st.ctimeNs}:${st.birthtimeNs}`;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

/**
 * Reads `names` (default: every file) from `dir` so that all come from one set even while a
 * writer swaps the directory: its identity is compared before and after, and the read retried if
 * it changed. A missing `dir` is first given a moment (a swap in progress), then recovered.
 */
export async function readDirConsistent(dir: string, names?: string[]): Promise<Map<string, Buffer>> {
  for (let attempt = 0; attempt < 20; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, attempt));
    const before = await dirIdentity(dir);
    if (before === undefined) {
      if (attempt === 3) await recoverAtomicDir(dir);
      continue;
    }
    const out = new Map<string, Buffer>();
    try {
      for (const name of names ?? (await fs.readdir(dir)).sort()) out.set(name, await fs.readFile(join(dir, name)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || (await dirIdentity(dir)) === before) throw e;
      continue;
    }
    if ((await dirIdentity(dir)) === before) return out;
  }
  throw new UserError(`cannot read ${dir}: the folder is missing or kept changing while being read; check the path, or stop other processes writing it`);
}
