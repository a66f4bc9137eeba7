/**
 * One W&B run as the training process sees it: `log` never waits and never throws into training.
 * Rows go to the run journal on disk (always) and, online, to W&B through the file_stream sender and the
 * run-file uploader, both in the background.
 */
import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import { basename, relative, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { captureConsole, outputLogLine } from './console.ts';
import { toWandbJson } from '../extended-json.ts';
import { defaultTransmitMs, noOffsets, type FileStreamTiming } from './filestream.ts';
import { HistoryBuilder, type Clock, type Row } from '../history.ts';
import { JOURNAL_FORMAT, JOURNAL_VERSION, RunJournal, upsertVariablesFor, type RunRecord } from './offline.ts';
import { oneLine, type Reporter } from '../reporter.ts';
import { configYaml, environmentMetadata, gitInfo } from './run-files.ts';
import type { Settings } from './settings.ts';
import { gpuInventory, SystemMonitor } from './system-metrics.ts';
import { sessionTarget, UploadSession, type SessionTarget } from './uploads.ts';
import { UnreachableError, WandbApi, type ApiTiming } from './wandb.ts';
import { LatestWriter } from '../latest-writer.ts';

/** W&B skips history lines longer than this ("imposed by the back-end", 10 MiB − 100 KiB). */
export const MAX_LINE_BYTES = 10 * 1024 * 1024 - 100 * 1024;

export const USER_AGENT = 'ort-dann (W&B HTTP client)';

export interface Timing extends FileStreamTiming, ApiTiming {
  /** GraphQL attempts when creating the run before falling back to offline. */
  startAttempts: number;
  uploadAttempts: number;
  /** How long finish waits for uploads and the final file_stream request. */
  finishTimeoutMs: number;
  statsIntervalMs: number;
  /** Memory budget per streamed file for lines not yet acknowledged. */
  memoryBytes: number;
  /** How often the journal's wandb-summary.json is rewritten during the run. */
  summaryWriteMs: number;
}

export const DEFAULT_TIMING: Timing = {
  transmitMs: defaultTransmitMs,
  heartbeatMs: 30_000,
  maxRequestBytes: 4 << 20,
  maxLinesPerFile: 10_000,
  graphqlTimeoutMs: 30_000,
  fileStreamTimeoutMs: 60_000,
  uploadTimeoutMs: 600_000,
  backoff: { baseMs: 2000, maxMs: 60_000 },
  startAttempts: 3,
  uploadAttempts: 8,
  finishTimeoutMs: 120_000,
  statsIntervalMs: 15_000,
  memoryBytes: 8 << 20,
  summaryWriteMs: 10_000,
};

export interface RunOptions {
  settings: Settings;
  runDir: string;
  config: Record<string, unknown>;
  reporter: Reporter;
  clock: Clock;
  /** Clock time the run started; `_runtime` counts from here. */
  startMs: number;
  timing: Timing;
  /** nvidia-smi's name or path for GPU metrics and metadata; false to skip. */
  nvidiaSmi: string | false;
  systemMetrics: boolean;
  /** Capture process.stdout/stderr (true), these streams, or nothing (false). */
  captureConsole: boolean | { stdout: Writable; stderr: Writable };
}

export class TrackedRun {
  stopRequested = false;
  private readonly history: HistoryBuilder;
  private readonly summary: Row = {};
  private summaryVersion = 0;
  private summaryCache: { version: number; line: string } | undefined;
  private lastSummaryWrite = 0;
  private session: UploadSession | undefined;
  private monitor: SystemMonitor | undefined;
  private restoreConsole: (() => void) | undefined;
  private finishing: Promise<void> | undefined;

  private constructor(
    private readonly o: RunOptions,
    readonly journal: RunJournal,
    private readonly record: RunRecord,
    private readonly api: WandbApi | undefined,
    /** Set when online: the server's names and the run URL. */
    readonly server: SessionTarget | undefined,
  ) {
    this.history = new HistoryBuilder(
      (row) => this.onRow(row),
      o.clock,
      (step, current) => o.reporter.warnOnce(`step-${step}`, `dropped values logged to step ${step}, behind the current step ${current} (W&B steps only go up)`),
      o.startMs,
    );
  }

  get online(): boolean {
    return this.server !== undefined;
  }

  get url(): string | undefined {
    return this.server?.url;
  }

  /**
   * Creates the run on W&B (online) and its journal. A bad key or entity throws a UserError; a server
   * that cannot be reached makes the run offline, with a warning.
   */
  static async start(o: RunOptions): Promise<TrackedRun> {
    const s = o.settings;
    const [git, gpus] = await Promise.all([gitInfo(), o.nvidiaSmi ? gpuInventory(o.nvidiaSmi) : []]);
    const record: RunRecord = {
      format: JOURNAL_FORMAT,
      version: JOURNAL_VERSION,
      runId: s.runId,
      entity: s.entity ?? null,
      project: s.project,
      displayName: s.name ?? null,
      tags: s.tags,
      notes: s.notes ?? null,
      group: s.group ?? null,
      jobType: s.jobType ?? null,
      config: o.config,
      baseUrl: s.baseUrl,
      startedAt: new Date(o.startMs).toISOString(),
      host: hostname(),
      repo: git.remote ?? null,
      commit: git.commit ?? null,
      sweep: s.sweepId ?? null,
    };
    let api: WandbApi | undefined;
    let server: SessionTarget | undefined;
    if (s.mode === 'online') {
      api = new WandbApi({
        baseUrl: s.baseUrl,
        appUrl: s.appUrl,
        apiKey: s.apiKey!,
        apiKeySource: s.apiKeySource!,
        username: s.username,
        timing: { ...o.timing, graphqlTimeoutMs: s.graphqlTimeoutMs ?? o.timing.graphqlTimeoutMs },
        reporter: o.reporter,
        userAgent: USER_AGENT,
      });
      // The retry back-off timers are unref'd; without a ref'd handle, node would exit (status 13) mid-wait, as in sync.ts.
      const keepAlive = setInterval(() => {}, 1 << 30);
      try {
        const up = await api.upsertBucket(upsertVariablesFor(record), o.timing.startAttempts);
        server = sessionTarget(up, s.appUrl);
        // The server's names win: the default entity, and the random display name it picks when none was given.
        Object.assign(record, { entity: up.entity, project: up.project, displayName: up.displayName });
      } catch (e) {
        api.close();
        api = undefined;
        if (!(e instanceof UnreachableError)) throw e;
        o.reporter.warn(`cannot reach W&B at ${s.baseUrl} (${oneLine(e.message, 160)}); logging offline, upload later with: ort-dann wandb-sync ${o.runDir}`);
      } finally {
        clearInterval(keepAlive);
      }
    }
    const writer = new LatestWriter((path, e) => o.reporter.warnOnce(`write-${path}`, `cannot write ${path} (${e.message})`));
    const journal = await RunJournal.create(
      o.runDir,
      server !== undefined,
      record,
      {
        memoryBytes: o.timing.memoryBytes,
        keepForReading: server !== undefined,
        onDiskError: (e) => o.reporter.warn(`cannot write the run journal in ${o.runDir} (${e.message}); W&B data is kept in memory only`),
      },
      writer,
    );
    const run = new TrackedRun(o, journal, record, api, server);
    const args = process.argv.slice(2).map((a) => o.reporter.redact(a));
    journal.writeFile('config.yaml', configYaml(o.config));
    journal.writeFile('wandb-metadata.json', `${JSON.stringify(environmentMetadata({ startedAt: new Date(o.startMs), args, gpus, git }), null, 2)}\n`);
    await journal.flush();
    run.startBackground();
    if (server) o.reporter.info(`run ${record.displayName ?? s.runId}: ${server.url}`);
    else o.reporter.info(`run ${record.displayName ?? s.runId} is logged offline in ${journal.dir}`);
    return run;
  }

  /** Values for `step` (merged with others at the same step). Never waits, never throws. */
  log(values: Row, step: number): void {
    if (this.finishing) return;
    try {
      this.history.log(values, step);
    } catch (e) {
      this.logFailed(e);
    }
  }

  /** Reports (once) a logging failure; training goes on without that data. */
  logFailed(e: unknown): void {
    this.o.reporter.warnOnce('log', `W&B logging failed (${oneLine(String((e as Error)?.message ?? e), 160)}); training continues`);
  }

  /** Closes the pending history row (end of a fit). */
  flushHistory(): void {
    this.history.flush();
  }

  /** One console line for output.log. */
  output(text: string, stderr: boolean): void {
    this.journal.spools['output.log'].append(outputLogLine(this.o.reporter.redact(text), stderr, this.o.clock.now()));
  }

  /**
   * Ends the run: closes the last row, writes the summary and exit record, uploads the remaining files and
   * `modelPath` (online), then marks the run complete. Waits at most the finish timeout; whatever did not
   * make it stays in the journal for `ort-dann wandb-sync`. Calling it again returns the same promise.
   */
  finish(exitCode: number, modelPath?: string): Promise<void> {
    this.finishing ??= this.doFinish(exitCode, modelPath);
    return this.finishing;
  }

  private startBackground(): void {
    const { o, server, api, journal } = this;
    if (server && api) {
      this.session = new UploadSession({
        api,
        target: server,
        journalDir: journal.dir,
        writer: journal.writer,
        spools: journal.spools,
        start: noOffsets(),
        uploaded: [],
        summary: () => this.summaryLine(),
        timing: o.timing,
        reporter: o.reporter,
        onStopped: () => {
          this.stopRequested = true;
          o.reporter.warn('the run was stopped from the W&B UI; training ends after the current step');
        },
      });
      for (const name of ['wandb-metadata.json', 'config.yaml']) this.session.upload(name, journal.filePath(name));
    }
    if (o.systemMetrics) {
      this.monitor = new SystemMonitor((m) => this.onStats(m), { intervalMs: o.timing.statsIntervalMs, nvidiaSmi: o.nvidiaSmi });
      this.monitor.start();
    }
    if (o.captureConsole) {
      this.restoreConsole = captureConsole((text, stderr) => this.output(text, stderr), o.captureConsole === true ? undefined : o.captureConsole);
    }
  }

  private onRow(row: Row): void {
    const line = toWandbJson(row);
    const size = Buffer.byteLength(line);
    if (size > MAX_LINE_BYTES) {
      this.o.reporter.warnOnce('line-size', `the row of step ${row._step} is ${size} bytes, over W&B's per-line limit; it is not logged`);
      return;
    }
    this.journal.spools['wandb-history.jsonl'].append(line);
    Object.assign(this.summary, row, { _wandb: { runtime: Math.floor(row._runtime as number) } });
    this.summaryVersion++;
    const now = this.o.clock.now();
    if (now - this.lastSummaryWrite >= this.o.timing.summaryWriteMs) {
      this.lastSummaryWrite = now;
      this.journal.writeFile('wandb-summary.json', this.summaryLine()!.line);
    }
  }

  private onStats(metrics: Record<string, number>): void {
    // A sample that was under way when finish stopped the monitor.
    if (this.finishing) return;
    const row: Row = {};
    for (const [k, v] of Object.entries(metrics)) row[`system.${k}`] = v;
    const now = this.o.clock.now();
    row._wandb = true;
    row._timestamp = now / 1000;
    row._runtime = this.history.runtimeSeconds();
    this.journal.spools['wandb-events.jsonl'].append(toWandbJson(row));
  }

  private summaryLine(): { version: number; line: string } | undefined {
    if (this.summaryVersion === 0) return undefined;
    if (this.summaryCache?.version !== this.summaryVersion) this.summaryCache = { version: this.summaryVersion, line: toWandbJson(this.summary) };
    return this.summaryCache;
  }

  private async doFinish(exitCode: number, modelPath: string | undefined): Promise<void> {
    const { o, journal } = this;
    // Background timers do not hold the process open; while finish waits on them, this does.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      this.monitor?.stop();
      this.restoreConsole?.();
      this.history.flush();
      const summary = this.summaryLine();
      journal.writeFile('wandb-summary.json', summary ? summary.line : '{}');
      const files: { name: string; path: string }[] = [];
      if (modelPath !== undefined) {
        if (existsSync(modelPath)) files.push({ name: basename(modelPath), path: relative(journal.dir, resolve(modelPath)) });
        else o.reporter.warn(`the model file ${modelPath} does not exist, so it is not uploaded to W&B`);
      }
      journal.writeRecord('exit.json', { exitCode, runtime: this.history.runtimeSeconds(), finishedAt: new Date(o.clock.now()).toISOString(), files });
      await journal.flush();
      if (!this.session) {
        o.reporter.info(`offline run kept in ${journal.dir}; upload it with: ort-dann wandb-sync ${o.runDir}`);
        return;
      }
      for (const name of ['wandb-summary.json', 'output.log']) this.session.upload(name, journal.filePath(name));
      for (const f of files) this.session.upload(f.name, resolve(journal.dir, f.path));
      if (await this.session.finish(exitCode, Date.now() + o.timing.finishTimeoutMs)) {
        o.reporter.info(`run ${this.record.displayName ?? this.record.runId} finished: ${this.url}`);
      } else {
        o.reporter.warn(`the W&B upload did not finish; the run is kept in ${journal.dir}, upload the rest with: ort-dann wandb-sync ${o.runDir}`);
      }
    } finally {
      await journal.close();
      this.api?.close();
      clearInterval(keepAlive);
    }
  }
}

