/**
 * Run files (config.yaml, wandb-metadata.json, wandb-summary.json, output.log, the exported model) go
 * up one at a time through CreateRunFiles' signed URLs. A success is announced to the file_stream in its
 * `uploaded` list, as wandb-core does; a file that cannot be uploaded is reported and left for wandb-sync.
 */
import { stat } from 'node:fs/promises';
import { isFinalStatus, retryDelayMs, sleep, TransportError, type Backoff, type HttpResponse } from './http.ts';
import { oneLine, type Reporter } from './reporter.ts';
import { FinalStatusError, UnreachableError, type WandbApi } from './wandb.ts';

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
        if (e instanceof FinalStatusError) {
          last = e.message;
          break;
        }
        if (!(e instanceof UnreachableError || e instanceof TransportError)) throw e;
        last = e.message;
      }
      if (attempt + 1 < opts.attempts) await sleep(retryDelayMs(attempt, opts.backoff, res, Date.now()), signal, false);
    }
    opts.reporter.warn(`could not upload ${name} to W&B (${last || 'cancelled'}); ort-dann wandb-sync can retry it`);
    return false;
  }
}
