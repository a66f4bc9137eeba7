/**
 * Run files (config.yaml, wandb-metadata.json, wandb-summary.json, output.log, the exported model) go
 * up one at a time through CreateRunFiles' signed URLs. A success is announced to the file_stream in its
 * `uploaded` list, as wandb-core does; a file that cannot be uploaded is reported and left for wandb-sync.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { toWandbJson } from '../extended-json.ts';
import { FileStream, noOffsets, type FileStreamTiming, type Offsets, type StreamFile } from './filestream.ts';
import { isFinalStatus, retryDelayMs, sleep, TransportError, type Backoff, type HttpResponse } from './http.ts';
import type { SyncRecord } from './offline.ts';
import { oneLine, type Reporter } from '../reporter.ts';
import type { Spool } from './spool.ts';
import { runUrlFor } from './settings.ts';
import { UnreachableError, type UpsertResult, type WandbApi } from './wandb.ts';
import type { LatestWriter } from '../latest-writer.ts';

export interface UploadTarget {
  entity: string;
  project: string;
  runId: string;
}

export class RunUploader {
  private readonly queue: { name: string; path: string }[] = [];
  private worker: Promise<void> | undefined;
  private readonly abortCtl = new AbortController();
  private failures = 0;

  constructor(
    private readonly api: WandbApi,
    private readonly target: UploadTarget,
    private readonly opts: { attempts: number; backoff: Backoff; reporter: Reporter; onUploaded(name: string): void },
  ) {}

  enqueue(name: string, path: string): void {
    this.queue.push({ name, path });
    this.worker ??= this.work();
  }

  /** Waits for the queue to empty, up to `deadlineMs` (wall clock); true when every file went up. */
  async drain(deadlineMs: number): Promise<boolean> {
    const stop = new AbortController();
    const timer = sleep(Math.max(0, deadlineMs - Date.now()), stop.signal, false).then(() => 'timeout' as const);
    while (this.worker) {
      if ((await Promise.race([this.worker.then(() => 'idle' as const), timer])) === 'timeout') {
        this.abortCtl.abort();
        await this.worker;
        this.failures += this.queue.length;
        this.queue.length = 0;
      }
    }
    stop.abort();
    return this.failures === 0;
  }

  private async work(): Promise<void> {
    for (let item = this.queue.shift(); item; item = this.queue.shift()) {
      if (!(await this.upload(item.name, item.path))) this.failures++;
    }
    this.worker = undefined;
  }

  private async upload(name: string, path: string): Promise<boolean> {
    const { api, target, opts } = this;
    const signal = this.abortCtl.signal;
    let last = '';
    for (let attempt = 0; attempt < opts.attempts && !signal.aborted; attempt++) {
      let res: HttpResponse | undefined;
      try {
        const size = (await stat(path)).size;
        const { headers, urls } = await api.createRunFiles(target.entity, target.project, target.runId, [name], 1, signal);
        const url = urls.get(name);
        if (!url) {
          opts.onUploaded(name);
          return true;
        }
        res = await api.putFile(url, headers, path, size, signal);
        if (res.status >= 200 && res.status < 300) {
          opts.onUploaded(name);
          return true;
        }
        last = `HTTP ${res.status}${res.body ? `: ${oneLine(res.body, 160)}` : ''}`;
        if (isFinalStatus(res.status)) break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          opts.reporter.warn(`cannot upload ${name}: ${path} does not exist`);
          return false;
        }
        last = oneLine(String((e as Error)?.message ?? e), 160);
        // Only network trouble is worth another try; a refusal or a local fault would repeat.
        if (!(e instanceof UnreachableError || e instanceof TransportError)) break;
      }
      if (attempt + 1 < opts.attempts) await sleep(retryDelayMs(attempt, opts.backoff, res, Date.now()), signal, false);
    }
    opts.reporter.warn(`could not upload ${name} to W&B (${last || 'cancelled'}); ort-dann wandb-sync can retry it`);
    return false;
  }
}

export interface SessionTarget extends UploadTarget {
  url: string;
  /** Server line number of the journal's first history line. */
  historyBase: number;
}

/** Where an UpsertBucket answer says the run lives. */
export function sessionTarget(up: UpsertResult, appUrl: string, historyBase = up.historyLineCount): SessionTarget {
  return { entity: up.entity, project: up.project, runId: up.runId, url: runUrlFor(appUrl, up.entity, up.project, up.runId), historyBase };
}

export interface UploadSessionOptions {
  api: WandbApi;
  target: SessionTarget;
  journalDir: string;
  writer: LatestWriter;
  spools: Record<StreamFile, Spool>;
  /** Journal lines and run files the server already has (from sync.json, or none for a new run). */
  start: Offsets;
  uploaded: string[];
  summary(): { version: number; line: string } | undefined;
  timing: FileStreamTiming & { uploadAttempts: number };
  reporter: Reporter;
  onStopped(): void;
}

/**
 * A journal being sent to a W&B run: the file_stream sender and the run-file uploader together, with
 * sync.json kept up to date after every acknowledgement, so whoever continues (wandb-sync) starts exactly
 * where the server stopped. Used by live runs and by wandb-sync alike.
 */
export class UploadSession {
  private readonly stream: FileStream;
  private readonly uploader: RunUploader;
  private acked: Offsets;
  private readonly uploaded: string[];

  constructor(private readonly o: UploadSessionOptions) {
    const { api, target } = o;
    this.acked = { ...o.start };
    this.uploaded = [...o.uploaded];
    this.stream = new FileStream({
      api,
      entity: target.entity,
      project: target.project,
      runId: target.runId,
      spools: o.spools,
      start: o.start,
      offsetBase: { ...noOffsets(), 'wandb-history.jsonl': target.historyBase },
      summary: o.summary,
      timing: o.timing,
      reporter: o.reporter,
      onAck: (acked) => {
        this.acked = acked;
        this.record(false);
      },
      onStopped: o.onStopped,
    });
    this.uploader = new RunUploader(api, target, {
      attempts: o.timing.uploadAttempts,
      backoff: o.timing.backoff,
      reporter: o.reporter,
      onUploaded: (name) => {
        this.uploaded.push(name);
        this.stream.markUploaded(name);
        this.record(false);
      },
    });
    this.stream.start();
  }

  /** Queues a run file, unless the server already has it. */
  upload(name: string, path: string): void {
    if (!this.uploaded.includes(name)) this.uploader.enqueue(name, path);
  }

  /** Finishes the uploads, then completes the run; true when the server acknowledged everything by `deadlineMs`. */
  async finish(exitCode: number, deadlineMs: number): Promise<boolean> {
    const uploadsDone = await this.uploader.drain(deadlineMs);
    const complete = (await this.stream.finish(exitCode, deadlineMs)) && uploadsDone;
    this.record(complete);
    await this.o.writer.flush();
    return complete;
  }

  private record(complete: boolean): void {
    const { target } = this.o;
    const rec: SyncRecord = {
      entity: target.entity,
      project: target.project,
      runId: target.runId,
      url: target.url,
      historyBase: target.historyBase,
      acked: this.acked,
      uploaded: [...this.uploaded],
      complete,
    };
    this.o.writer.write(join(this.o.journalDir, 'sync.json'), `${toWandbJson(rec)}\n`);
  }
}
