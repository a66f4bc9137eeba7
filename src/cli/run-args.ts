/**
 * What `train --resume` remembers. A run writes the flags that shape it to `<run-dir>/args.json`;
 * resuming takes every remembered flag that is not given again (so `--wandb disabled`, the data and
 * the schedule carry over), and says in one line when a flag given again re-plans the schedule.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';

export const RUN_ARGS_FILE = 'args.json';

const PATH_FLAGS = ['artifacts', 'source', 'source-val', 'target', 'target-val', 'target-labels'];
const REMEMBERED = [
  ...PATH_FLAGS, 'image-size', 'epochs', 'freeze-epochs', 'batch-size', 'source-size', 'val-size', 'lr', 'lr-mult', 'lambda-domain', 'domain',
  'monitor', 'monitor-mode', 'seed', 'normalization', 'skip-bad-images', 'on-nan', 'sim-workers', 'source-timeout',
  // Not the W&B free-text flags (name, notes, tags, group, job type): text may hold a secret (the API key
  // pasted into notes), and the resumed W&B run keeps them on the server anyway.
  'wandb', 'wandb-project', 'wandb-entity', 'wandb-histograms-every',
];
const ALIASES: Record<string, string> = { 'wandb-mode': 'wandb' };

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** The flags typed on the command line (kebab-case, aliases resolved, --no-x counted as x). */
export function explicitFlags(argv: string[]): Set<string> {
  const out = new Set<string>();
  for (const arg of argv) {
    if (arg === '--') break;
    const m = /^--(no-)?([^=]+)/.exec(arg);
    if (!m) continue;
    const name = kebab(m[2]);
    out.add(ALIASES[name] ?? name);
  }
  return out;
}

/** Writes the remembered flags of a new run (paths made absolute, so a resume from elsewhere finds them). */
export async function saveRunArgs(runDir: string, args: Record<string, unknown>): Promise<void> {
  const saved: Record<string, unknown> = {};
  for (const k of REMEMBERED) {
    const v = args[k];
    if (v === undefined) continue;
    saved[k] = PATH_FLAGS.includes(k) && typeof v === 'string' && existsSync(v) ? resolve(v) : v;
  }
  await writeFileAtomic(join(runDir, RUN_ARGS_FILE), `${JSON.stringify(saved, null, 2)}\n`);
}

/** The flags a run was started with, or undefined for a run from before args.json. */
export function readRunArgs(runDir: string): Record<string, unknown> | undefined {
  const file = join(runDir, RUN_ARGS_FILE);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    throw new UserError(`${file} is not valid JSON; give the run's flags again, or delete it to resume with the flags given`);
  }
}

/** Fills every remembered flag not given on `argv` into `args` (all spellings yargs uses); returns the stored flags. */
export function restoreRunArgs(runDir: string, args: Record<string, unknown>, argv: string[]): Record<string, unknown> | undefined {
  const stored = readRunArgs(runDir);
  if (!stored) return undefined;
  const given = explicitFlags(argv);
  for (const [k, v] of Object.entries(stored)) {
    if (given.has(k) || !REMEMBERED.includes(k)) continue;
    args[k] = v;
    args[camel(k)] = v;
    for (const [alias, name] of Object.entries(ALIASES)) if (name === k) { args[alias] = v; args[camel(alias)] = v; }
  }
  return stored;
}

/**
 * On resume: refuses a finished run (summary.json written) whose plan has no steps left, and says in one line (returned)
 * when the step total changed, since the one-cycle schedule is then re-planned from the current step.
 */
export function describeReplan(o: { runDir: string; step: number; totalSteps: number; nIter: number; stored?: Record<string, unknown>; epochs: number; freezeEpochs: number; finished: boolean }): string | undefined {
  const total = (o.epochs + o.freezeEpochs) * o.nIter;
  const was = o.stored ? (Number(o.stored.epochs) + Number(o.stored['freeze-epochs'] ?? 1)) * o.nIter : undefined;
  if (o.step > o.totalSteps) {
    throw new UserError(`--resume: --epochs ${o.epochs} plans ${total} steps, but ${o.runDir} has trained ${o.step} already; to train on, pass --epochs with more than ${Math.ceil(o.step / o.nIter) - o.freezeEpochs}`);
  }
  // A run stopped after its last step but before its export (killed) resumes to finish it.
  if (o.step === o.totalSteps && o.finished) {
    throw new UserError(`--resume: ${o.runDir} has trained all ${o.epochs} epochs of this plan (step ${o.step} of ${total}); to train on, pass --epochs with more than ${o.epochs} (the schedule is then re-planned)`);
  }
  if (was !== undefined && Number.isFinite(was) && was !== total) {
    return `resume: the run was planned for ${was} steps, now ${total}; the one-cycle schedule is re-planned and continues from step ${o.step}`;
  }
  return undefined;
}
