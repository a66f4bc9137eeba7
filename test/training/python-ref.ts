/**
 * Runs a Python reference script (numpy + torch) for the training tests. A machine without such a
 * Python fails these tests instead of skipping them: the references are the point of the tests.
 */
import { spawnSync } from 'node:child_process';

let found: string | undefined;

/** The first of $PYTHON, Debian's /usr/bin/python3 and `python3` that imports numpy and torch. */
function python(): string {
  if (found) return found;
  const candidates = [process.env.PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => !!c);
  for (const c of candidates) {
    if (spawnSync(c, ['-c', 'import numpy, torch'], { stdio: 'ignore' }).status === 0) return (found = c);
  }
  throw new Error(`no Python with numpy and torch among ${candidates.join(', ')}; install them (Debian: apt-get install python3-torch) or set PYTHON`);
}

/** Runs `script` with `input` as JSON on stdin and returns the JSON it prints. */
export function runPython<T>(script: string, input: unknown): T {
  const r = spawnSync(python(), ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`python reference failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
