/**
 * fastai's Recorder: the smoothed train loss (AvgSmoothLoss) and the epoch table
 * (epoch, train_loss, valid_loss, metrics…, time), as fastai prints them on a console.
 * Reference: docs/fastai-semantics.md §7.
 */
import type { Callback, LoopState } from './types.ts';

/**
 * fastai `AvgSmoothLoss`: an exponential moving average started at 0 and debiased by 1 − beta^count.
 * Computed in float64 (fastai uses a float32 tensor; the difference is ~1e-7 relative).
 */
export class SmoothLoss {
  private val = 0;
  private n = 0;
  constructor(readonly beta = 0.98) {}

  reset(): void {
    this.val = 0;
    this.n = 0;
  }

  /** Adds one batch loss and returns the smoothed value. */
  add(loss: number): number {
    this.n += 1;
    this.val = this.beta * this.val + (1 - this.beta) * loss;
    return this.value as number;
  }

  get count(): number {
    return this.n;
  }

  get value(): number | undefined {
    return this.n === 0 ? undefined : this.val / (1 - this.beta ** this.n);
  }
}

/** fastprogress `format_time`: whole seconds as mm:ss, or h:mm:ss from an hour on. */
export function formatTime(seconds: number): string {
  const t = Math.floor(seconds);
  const h = Math.floor(t / 3600);
  const mm = String(Math.floor(t / 60) % 60).padStart(2, '0');
  const ss = String(t % 60).padStart(2, '0');
  return h !== 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** A cell as fastai writes it: numbers (Python floats) with 6 decimals, strings as they are, a missing metric as None. */
export function formatCell(v: number | string | undefined): string {
  if (typeof v === 'string') return v;
  if (v === undefined) return 'None';
  if (Number.isNaN(v)) return 'nan';
  if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
  return v.toFixed(6);
}

/**
 * fastai's console table: each column as wide as its name but at least 8 characters, then 2 spaces.
 * Values are left-aligned under their name.
 */
export class EpochTable {
  private readonly widths: number[];
  constructor(readonly columns: readonly string[]) {
    this.widths = columns.map((c) => Math.max(8, c.length));
  }

  header(): string {
    return this.line(this.columns);
  }

  row(values: readonly (number | string | undefined)[]): string {
    return this.line(values.map(formatCell));
  }

  private line(cells: readonly string[]): string {
    // A value wider than its column (e.g. a negative DEV of 10 characters) still keeps one space before the next.
    return cells.map((c, i) => c.padEnd(this.widths[i] + 2, ' ') + (c.length >= this.widths[i] + 2 ? ' ' : '')).join('');
  }
}

export interface RecorderOptions {
  /** Metric columns after train_loss; by default valid_loss then the other keys of the first validation. */
  metricNames?: string[];
  /** Where table lines go (default: stdout). */
  write?: (line: string) => void;
  /** Clock in milliseconds, injectable for tests. */
  now?: () => number;
  beta?: number;
}

/** One table row as data. */
export type EpochRow = Record<string, number | string | undefined>;

/**
 * A loop Callback that fills `state.smoothLoss` after each batch and writes the epoch table. Like
 * fastai, each fit (each phase of fine_tune) restarts the smoothing and prints its own table header,
 * and train_loss is the smoothed value at the epoch's end. The epoch column shows `state.epoch`.
 * Run it before callbacks that read smoothLoss, and after the progress bar has cleared its line.
 */
export class Recorder implements Callback {
  readonly name = 'recorder';
  readonly smooth: SmoothLoss;
  /** Every row written so far, in order. */
  readonly rows: EpochRow[] = [];
  /** Per batch: the last group's lr and the smoothed loss (fastai recorder.lrs / recorder.losses). */
  readonly lrs: number[] = [];
  readonly losses: number[] = [];
  private table?: EpochTable;
  private epochStart = 0;
  private readonly write: (line: string) => void;
  private readonly now: () => number;

  constructor(private readonly opts: RecorderOptions = {}) {
    this.smooth = new SmoothLoss(opts.beta);
    this.write = opts.write ?? ((line) => process.stdout.write(`${line}\n`));
    this.now = opts.now ?? (() => performance.now());
  }

  beforeFit(): void {
    this.smooth.reset();
    this.table = undefined;
  }

  beforeEpoch(): void {
    this.epochStart = this.now();
  }

  afterBatch(state: LoopState): void {
    if (state.loss === undefined) return;
    state.smoothLoss = this.smooth.add(state.loss);
    this.losses.push(state.smoothLoss);
    const last = state.hypers[state.hypers.length - 1];
    if (last) this.lrs.push(last.lr);
  }

  afterEpoch(state: LoopState): void {
    const metrics = state.metrics ?? {};
    if (!this.table) {
      const names = this.opts.metricNames ?? ['valid_loss', ...Object.keys(metrics).filter((k) => k !== 'valid_loss')];
      this.table = new EpochTable(['epoch', 'train_loss', ...names, 'time']);
      this.write(this.table.header());
    }
    // Counted from 1 like the progress bar ("epoch 2/5"), the report's x axis and summary.json (fastai prints from 0).
    const row: EpochRow = { epoch: String(state.epoch + 1), train_loss: this.smooth.value };
    for (const name of this.table.columns.slice(2, -1)) row[name] = metrics[name];
    row.time = formatTime((this.now() - this.epochStart) / 1000);
    this.rows.push(row);
    this.write(this.table.row(this.table.columns.map((c) => row[c])));
  }
}
