/**
 * Tracking for one training run: W&B (online, offline or disabled) plus metrics.jsonl and report.html,
 * which every run writes. The train command calls `createTracking`, adds `callbacks` to the loop and calls
 * `finish` once at the end, in a `finally`, with the exit code and the exported model.
 *
 * What lands where (runDir is the ort-dann run directory):
 *   - every mode: runDir/metrics.jsonl (scalar rows, appended) and runDir/report.html (rewritten each epoch)
 *   - online and offline: the run journal runDir/wandb/<run|offline-run>-<time>-<id>/ (see wandb/offline.ts);
 *     online runs also stream to W&B, and the journal lets `ort-dann wandb-sync runDir` finish an upload
 *     that an outage cut short
 *   - disabled: nothing else
 *
 * Layout: wandb/ is the W&B client (settings, GraphQL and file_stream protocol, run journal, sync);
 * metrics-jsonl.ts and report-html.ts are the local sinks; every one is a Tracker (tracker.ts).
 * The command-line flags that fill TrackingOptions live in src/cli/flags.ts.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { UserError } from '../errors.ts';
import { DEFAULT_HISTOGRAM_EVERY, WandbCallback } from './wandb/callback.ts';
import { systemClock, type Clock } from './history.ts';
import { MetricsJsonlCallback, readMetricsJsonl } from './metrics-jsonl.ts';
import { ReportCallback } from './report-html.ts';
import { Reporter, stderrLogger, type TrackingLogger } from './reporter.ts';
import type { Tracker } from './tracker.ts';
import { DEFAULT_TIMING, TrackedRun, type Timing } from './wandb/run.ts';
import { resolveSettings, type SettingsInput, type TrackingMode } from './wandb/settings.ts';

export type { SettingsInput, TrackingLogger, TrackingMode, Timing };

/** W&B settings (mode, project, entity, name, tags, notes, group, jobType, runId, baseUrl, apiKey) as in SettingsInput, plus: */
export interface TrackingOptions extends SettingsInput {
  /** The ort-dann run directory; created if missing. */
  runDir: string;
  /** The run's config: hyper-parameters, model config, artifact manifest version. Plain JSON values. */
  config?: Record<string, unknown>;
  /** Parameter and gradient histograms every N optimizer steps (wandb.watch's log_freq); 0 = never. Default 1000. */
  histogramEvery?: number;
  /** CPU, memory, disk and GPU metrics for W&B's System tab. Default true. */
  systemMetrics?: boolean;
  /** Copy stdout/stderr lines to W&B's Logs tab (output.log). Default true; tests pass their own streams. */
  captureConsole?: boolean | { stdout: Writable; stderr: Writable };
  /** Where warnings and the run URL go. Default: stderr, prefixed `wandb:`. */
  logger?: TrackingLogger;
  /** For tests: clock, timing, nvidia-smi command (false: none). */
  clock?: Clock;
  timing?: Partial<Timing>;
  nvidiaSmi?: string | false;
}

export interface Tracking {
  /** The mode in effect: online can turn offline when W&B is unreachable at start. */
  mode: TrackingMode;
  /** Add these to the training loop. */
  callbacks: Tracker[];
  runUrl?: string;
  /** The run journal (online and offline modes). */
  wandbDir?: string;
  /** True once W&B's Stop button was pressed; the callbacks also set LoopState.stopRequested. */
  readonly stopRequested: boolean;
  /**
   * Ends tracking: flushes metrics.jsonl and report.html, then (W&B) closes the run with `exitCode`
   * (0 = finished, anything else = failed) and uploads `modelPath` as a run file. Never throws for
   * network trouble; waits at most the finish timeout (2 min by default).
   */
  finish(exitCode: number, modelPath?: string): Promise<void>;
}

/**
 * Sets up tracking before training starts. Throws UserError for what the user must fix (a rejected key,
 * an unknown entity, a bad project name, online without a key); an unreachable W&B turns the run offline.
 */
export async function createTracking(opts: TrackingOptions): Promise<Tracking> {
  const settings = await resolveSettings(opts);
  const reporter = new Reporter(opts.logger ?? stderrLogger, settings.secret);
  // Free text the user typed goes to W&B and the run journal like the config: scrub a pasted key from it too.
  for (const k of ['name', 'notes', 'group', 'jobType'] as const) if (settings[k] !== undefined) settings[k] = reporter.redact(settings[k]!);
  settings.tags = settings.tags.map((t) => reporter.redact(t));
  const clock = opts.clock ?? systemClock;
  const startMs = clock.now();
  const config = redactDeep(opts.config ?? {}, reporter) as Record<string, unknown>;
  await mkdir(opts.runDir, { recursive: true }).catch((e: NodeJS.ErrnoException) => {
    throw new UserError(`cannot create the run directory ${opts.runDir} (${e.code}); choose a writable location`);
  });
  const metricsPath = join(opts.runDir, 'metrics.jsonl');
  const previousRows = await readMetricsJsonl(metricsPath);

  const run = settings.mode === 'disabled'
    ? undefined
    : await TrackedRun.start({
        settings,
        runDir: opts.runDir,
        config,
        reporter,
        clock,
        startMs,
        timing: { ...DEFAULT_TIMING, ...opts.timing },
        nvidiaSmi: opts.nvidiaSmi ?? 'nvidia-smi',
        systemMetrics: opts.systemMetrics ?? true,
        captureConsole: opts.captureConsole ?? true,
      });
  const mode: TrackingMode = run ? (run.online ? 'online' : 'offline') : 'disabled';
  const metrics = new MetricsJsonlCallback(metricsPath, clock, startMs, reporter);
  const report = new ReportCallback(
    join(opts.runDir, 'report.html'),
    { title: `ort-dann run ${settings.name ?? settings.runId}`, runUrl: run?.url, mode, startedAt: new Date(startMs).toISOString(), config },
    clock,
    startMs,
    reporter,
  );
  report.seed(previousRows);
  const local: Tracker[] = [metrics, report];
  const trackers = run ? [new WandbCallback(run, opts.histogramEvery ?? DEFAULT_HISTOGRAM_EVERY), ...local] : local;
  return {
    mode,
    callbacks: trackers,
    runUrl: run?.url,
    wandbDir: run?.journal.dir,
    get stopRequested() {
      return run?.stopRequested ?? false;
    },
    async finish(exitCode, modelPath) {
      // The local files first: they must not wait on the network.
      for (const t of [...local, ...trackers.filter((t) => !local.includes(t))]) await t.finish(exitCode, modelPath);
    },
  };
}

/** The config is user data; a key pasted into it must not reach W&B or the report. */
function redactDeep(value: unknown, reporter: Reporter): unknown {
  if (typeof value === 'string') return reporter.redact(value);
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, reporter));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, reporter)]));
  }
  return value;
}
