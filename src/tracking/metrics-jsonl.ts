/**
 * Local records of every run, whatever the W&B mode: the scalar rows W&B would get, in the same names and
 * steps, for tools and for users without W&B. Histograms are left out; they only make sense in W&B.
 */
import { appendFile, readFile } from 'node:fs/promises';
import type { LoopState } from '../training/types.ts';
import { parseWandbJson, toWandbJson } from './extended-json.ts';
import { epochEndValues, HistoryBuilder, trainStepValues, validationValues, type Clock, type Row } from './history.ts';
import { oneLine, type Reporter } from './reporter.ts';
import type { Tracker } from './tracker.ts';

/** Turns loop events into the W&B callback's scalar rows (same steps, same merging) for a local sink. */
export abstract class ScalarRowsCallback implements Tracker {
  abstract readonly name: string;
  protected readonly history: HistoryBuilder;

  constructor(clock: Clock, startMs: number, protected readonly reporter: Reporter) {
    this.history = new HistoryBuilder((row) => this.onRow(row), clock, () => {}, startMs);
  }

  protected abstract onRow(row: Row): void;

  /** Writes every pending row. */
  abstract close(): Promise<void>;

  finish(): Promise<void> {
    return this.close();
  }

  afterBatch(s: LoopState): void {
    this.history.log(trainStepValues(s), s.step);
  }

  afterValidate(s: LoopState): void {
    this.history.log(validationValues(s), s.step);
  }

  afterEpoch(s: LoopState): void | Promise<void> {
    this.history.log(epochEndValues(s), s.step);
  }

  afterFit(): void | Promise<void> {
    this.history.flush();
  }
}

/**
 * `<runDir>/metrics.jsonl`: one row per line with `_step`, `_runtime`, `_timestamp` and the logged values,
 * NaN/Infinity as bare tokens (as W&B and Python's json module write them). Appends, so a resumed run
 * continues the file.
 */
export class MetricsJsonlCallback extends ScalarRowsCallback {
  readonly name = 'metrics-jsonl';
  private pending: string[] = [];
  private writing: Promise<void> | undefined;

  constructor(readonly path: string, clock: Clock, startMs: number, reporter: Reporter) {
    super(clock, startMs, reporter);
  }

  protected onRow(row: Row): void {
    this.pending.push(toWandbJson(row));
    this.writing ??= this.drain();
  }

  override async afterFit(): Promise<void> {
    await this.close();
  }

  /** Closes the pending row and waits until every row is in the file. */
  async close(): Promise<void> {
    this.history.flush();
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const lines = this.pending;
      this.pending = [];
      try {
        await appendFile(this.path, `${lines.join('\n')}\n`);
      } catch (e) {
        this.reporter.warnOnce(`write-${this.path}`, `cannot write ${this.path} (${oneLine((e as Error).message, 120)}); metrics are not saved there`);
      }
    }
    this.writing = undefined;
  }
}

/** Rows of an existing metrics.jsonl (a resumed run), skipping unreadable lines. */
export async function readMetricsJsonl(path: string): Promise<Row[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const rows: Row[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      rows.push(parseWandbJson(line) as Row);
    } catch {
      // A line cut off by a crash; the rest of the file is still good.
    }
  }
  return rows;
}
