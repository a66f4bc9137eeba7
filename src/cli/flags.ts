/**
 * Command-line flags shared by several commands, in groups, so each command takes exactly the set
 * that means something to it and a concept has one name everywhere. A renamed flag stays accepted
 * for a while with a one-line deprecation warning (`deprecatedAlias`).
 */
import { join } from 'node:path';
import type { Argv, Options } from 'yargs';
import type { TrackingMode, TrackingOptions } from '../tracking/index.ts';
import { DEFAULT_HISTOGRAM_EVERY } from '../tracking/wandb/callback.ts';

/** A copy of a flag set without some flags: a command takes only the flags that mean something to it. */
export function without<F extends Record<string, Options>, K extends keyof F>(flags: F, ...names: K[]): Omit<F, K> {
  const copy: Record<string, Options> = { ...flags };
  for (const name of names) delete copy[name as string];
  return copy as Omit<F, K>;
}

/**
 * Accepts `--<old>` as the former name of `--<current>` with a one-line warning; `--help` shows only
 * the current name. When both are given, the current one wins.
 */
export function renamedFlag<T>(y: Argv<T>, old: string, current: string, spec: Options): Argv<T> {
  return y.option(old, { ...spec, hidden: true, describe: `old name of --${current}` }).middleware((argv: Record<string, unknown>) => {
    if (argv[old] === undefined) return;
    process.stderr.write(`ort-dann: warning: --${old} is deprecated; use --${current}\n`);
    argv[current] ??= argv[old];
  });
}

/** Where the built-in demo data of a given image size live: train, compare and demo-data agree on it. */
export function demoDataDir(imageSize: number): string {
  return join('data', `demo-${imageSize}px`);
}

/** The train command's W&B flags (yargs options); `trackingOptionsFromArgs` maps parsed values to options. */
export const wandbFlags = {
  wandb: { type: 'string', choices: ['online', 'offline', 'disabled'], describe: 'W&B mode (default: online if an API key is found, else offline)' },
  'wandb-project': { type: 'string', describe: 'W&B project (default: $WANDB_PROJECT or "uncategorized")' },
  'wandb-entity': { type: 'string', describe: 'W&B entity, user or team (default: $WANDB_ENTITY or your default entity)' },
  'wandb-name': { type: 'string', describe: 'W&B run display name (default: $WANDB_NAME or chosen by W&B)' },
  'wandb-tags': { type: 'string', describe: 'Comma-separated W&B tags (default: $WANDB_TAGS)' },
  'wandb-notes': { type: 'string', describe: 'W&B run notes' },
  'wandb-group': { type: 'string', describe: 'W&B run group' },
  'wandb-job-type': { type: 'string', describe: 'W&B job type' },
  'wandb-run-id': { type: 'string', describe: 'W&B run id (default: $WANDB_RUN_ID or random)' },
  'wandb-histograms-every': { type: 'number', default: DEFAULT_HISTOGRAM_EVERY, describe: 'Log parameter/gradient histograms every N steps (0: never)' },
} as const satisfies Record<string, Options>;

export function trackingOptionsFromArgs(args: Record<string, unknown>): Partial<TrackingOptions> {
  const str = (k: string) => (typeof args[k] === 'string' && args[k] !== '' ? (args[k] as string) : undefined);
  const tags = str('wandb-tags');
  return {
    mode: str('wandb') as TrackingMode | undefined,
    project: str('wandb-project'),
    entity: str('wandb-entity'),
    name: str('wandb-name'),
    tags: tags?.split(',').map((t) => t.trim()).filter((t) => t !== ''),
    notes: str('wandb-notes'),
    group: str('wandb-group'),
    jobType: str('wandb-job-type'),
    runId: str('wandb-run-id'),
    histogramEvery: typeof args['wandb-histograms-every'] === 'number' ? (args['wandb-histograms-every'] as number) : undefined,
  };
}
