/**
 * The file_stream sender. One request at a time; each carries, per file, the lines from the first one the
 * server has not acknowledged, at that line's offset. A retried request therefore rewrites the same lines
 * at the same offsets (nothing is stored twice) and meanwhile grows with newer lines (nothing waits in
 * memory for the outage to end: the spools keep them on disk). An idle run still posts `{}` as a heartbeat
 * so W&B does not mark it crashed; `{"stopped": true}` in an answer means the user pressed Stop.
 */
import { isFinalStatus, retryDelayMs, sleep, TransportError, type Backoff, type HttpResponse } from './http.ts';
import type { Reporter } from '../reporter.ts';
import type { Spool } from './spool.ts';
import type { WandbApi } from './wandb.ts';
import { oneLine } from '../reporter.ts';

export const STREAM_FILES = ['wandb-history.jsonl', 'wandb-events.jsonl', 'output.log'] as const;
export type StreamFile = (typeof STREAM_FILES)[number];
export type Offsets = Record<StreamFile, number>;

export function noOffsets(): Offsets {
  return { 'wandb-history.jsonl': 0, 'wandb-events.jsonl': 0, 'output.log': 0 };
}

export interface FileStreamTiming {
  /** Pause between requests while data keeps coming, by seconds since the stream started. */
  transmitMs(runtimeSeconds: number): number;
  heartbeatMs: number;
  backoff: Backoff;
  /** Bytes of lines per request (before JSON escaping); W&B caps requests near 10 MiB. */
  maxRequestBytes: number;
  maxLinesPerFile: number;
}

/** The legacy Python SDK's pacing: quick at first so the charts appear, then every 10 s, then 15 s. */
export function defaultTransmitMs(runtimeSeconds: number): number {
  return runtimeSeconds < 60 ? 2000 : runtimeSeconds < 300 ? 10_000 : 15_000;
}

export interface FileStreamOptions {
  api: WandbApi;
  entity: string;
  project: string;
  runId: string;
  spools: Record<StreamFile, Spool>;
  /** First line of each spool the server does not have yet. */
  start: Offsets;
  /** The server line number of each spool's line 0 (non-zero when the run already had history). */
  offsetBase: Offsets;
  /** The current summary and a version number that grows when it changes. */
  summary(): { version: number; line: string } | undefined;
  timing: FileStreamTiming;
  reporter: Reporter;
  /** After each acknowledged request: the spool lines now on the server. */
  onAck(acked: Offsets): void;
  onStopped(): void;
}

interface Built {
  body: string;
  advance: Offsets;
  sent: Offsets;
  summaryVersion: number;
  uploaded: string[];
  complete: boolean;
  hasData: boolean;
}

export class FileStream {
  private readonly next: Offsets;
  private readonly offset: Offsets;
  private sentSummary = 0;
  private uploadedPending: string[] = [];
  private exitCode: number | undefined;
  private completed = false;
  private stoppedSeen = false;
  private wakeCtl = new AbortController();
  private readonly abortCtl = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly startMs: number;
  /** In a streak of failed requests; `failureWarned` when that streak was reported. */
  private failing = false;
  private failureWarned = false;

  constructor(private readonly o: FileStreamOptions) {
    this.next = { ...o.start };
    this.offset = { ...o.start };
    for (const name of STREAM_FILES) this.offset[name] += o.offsetBase[name];
    this.startMs = Date.now();
  }

  start(): void {
    this.loop ??= this.run().catch((e) => {
      this.o.reporter.warn(`W&B upload stopped by an internal error: ${oneLine(String((e as Error)?.message ?? e))}`);
    });
  }

  /** Sends soon instead of at the next interval. */
  private wake(): void {
    this.wakeCtl.abort();
  }

  /** Tells the server (in the next request) that a run file finished uploading. */
  markUploaded(name: string): void {
    this.uploadedPending.push(name);
  }

  /**
   * Sends everything left, then `complete`/`exitcode`. Resolves true once the server acknowledged the
   * completion, false when `deadlineMs` (Date.now() time) passed first or the server refused the data for good.
   */
  async finish(exitCode: number, deadlineMs: number): Promise<boolean> {
    this.exitCode = exitCode;
    this.start();
    this.wake();
    const giveUp = new AbortController();
    const timer = sleep(Math.max(0, deadlineMs - Date.now()), giveUp.signal, false).then(() => 'timeout' as const);
    const outcome = await Promise.race([this.loop!.then(() => 'done' as const), timer]);
    giveUp.abort();
    if (outcome === 'timeout') {
      this.abortCtl.abort();
      await this.loop;
    }
    return this.completed;
  }

  private async run(): Promise<void> {
    let attempt = 0;
    let lastPost = -Infinity;
    let first = true;
    const signal = this.abortCtl.signal;
    while (!signal.aborted) {
      if (this.exitCode === undefined && !first) {
        await sleep(this.o.timing.transmitMs((Date.now() - this.startMs) / 1000), this.wakeCtl.signal, false);
        if (this.wakeCtl.signal.aborted) this.wakeCtl = new AbortController();
      }
      first = false;
      if (signal.aborted) return;
      const built = await this.build();
      if (!built.hasData && Date.now() - lastPost < this.o.timing.heartbeatMs) continue;

      let res: HttpResponse | undefined;
      try {
        res = await this.o.api.postFileStream(this.o.entity, this.o.project, this.o.runId, built.body, signal);
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        if (signal.aborted) return;
        res = undefined;
      }
      if (res && res.status >= 200 && res.status < 300) {
        this.acknowledge(built, res);
        lastPost = Date.now();
        attempt = 0;
        if (built.complete) {
          this.completed = true;
          return;
        }
        continue;
      }
      const failure = res ? `HTTP ${res.status}${res.body ? `: ${oneLine(res.body, 160)}` : ''}` : 'no answer (network error or timeout)';
      if (res && isFinalStatus(res.status)) {
        this.o.reporter.warn(`W&B refused run data (${failure}); the rest of the run stays in the run directory for ort-dann wandb-sync`);
        return;
      }
      const delay = retryDelayMs(attempt++, this.o.timing.backoff, res, Date.now());
      if (!this.failing) {
        this.failing = true;
        this.failureWarned = this.o.reporter.warnOnce(
          `retry-${res?.status ?? 'net'}`,
          `W&B upload failed (${failure}); retrying in ${(delay / 1000).toFixed(1)} s, data is kept on disk meanwhile`,
        );
      }
      await sleep(delay, signal, false);
    }
  }

  private async build(): Promise<Built> {
    const files: Record<string, { offset: number; content: string[] }> = {};
    const advance = { ...this.next };
    const sent = { ...this.offset };
    let budget = this.o.timing.maxRequestBytes;
    let hasData = false;
    let drained = true;
    for (const name of STREAM_FILES) {
      const spool = this.o.spools[name];
      const { lines, skipped } = await spool.read(this.next[name], this.o.timing.maxLinesPerFile, Math.max(1, budget));
      if (skipped > 0) this.o.reporter.warnOnce(`lost-${name}`, `${skipped} lines of ${name} were lost (disk unwritable and memory full)`);
      advance[name] += skipped + lines.length;
      if (advance[name] < spool.count) drained = false;
      if (lines.length === 0) continue;
      files[name] = { offset: this.offset[name], content: lines };
      sent[name] += lines.length;
      for (const l of lines) budget -= l.length;
      hasData = true;
    }
    const summary = this.o.summary();
    let summaryVersion = this.sentSummary;
    if (summary && summary.version > this.sentSummary) {
      // The backend reads only the last line of wandb-summary.json; wandb-core always writes line 0.
      files['wandb-summary.json'] = { offset: 0, content: [summary.line] };
      summaryVersion = summary.version;
      hasData = true;
    }
    const uploaded = [...this.uploadedPending];
    const complete = this.exitCode !== undefined && drained;
    const body: Record<string, unknown> = {};
    if (Object.keys(files).length > 0) body.files = files;
    if (uploaded.length > 0) body.uploaded = uploaded;
    if (complete) {
      body.complete = true;
      body.exitcode = this.exitCode;
    }
    return { body: JSON.stringify(body), advance, sent, summaryVersion, uploaded, complete, hasData: hasData || uploaded.length > 0 || complete };
  }

  private acknowledge(built: Built, res: HttpResponse): void {
    if (this.failing && this.failureWarned) this.o.reporter.info('W&B upload resumed');
    this.failing = false;
    Object.assign(this.next, built.advance);
    Object.assign(this.offset, built.sent);
    this.sentSummary = built.summaryVersion;
    this.uploadedPending.splice(0, built.uploaded.length);
    for (const name of STREAM_FILES) this.o.spools[name].ack(this.next[name]);
    this.o.onAck({ ...this.next });
    if (this.stoppedSeen) return;
    try {
      if ((JSON.parse(res.body) as { stopped?: unknown })?.stopped === true) {
        this.stoppedSeen = true;
        this.o.onStopped();
      }
    } catch {
      // Only `stopped` matters in the answer; anything unreadable is ignored, as wandb-core does.
    }
  }
}
