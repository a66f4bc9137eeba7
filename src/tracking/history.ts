/**
 * History rows as W&B builds them: values logged at the same step merge into one row, a higher step
 * closes the row, a lower step is refused (W&B drops it too, and the chart would be wrong). Closed rows
 * get `_step`, `_runtime` (seconds since the run started) and `_timestamp` (Unix seconds).
 *
 * The names logged here match the seed's wandb.log calls and fastai's WandbCallback, so dashboards built
 * on the Python runs keep working.
 */
import type { LoopState } from '../training/types.ts';

export type Row = Record<string, unknown>;

export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export class HistoryBuilder {
  private current = -1;
  private pending: Row | undefined;
  private readonly startMs: number;

  /**
   * @param emit receives each closed row, keys in logging order, then `_step`, `_runtime`, `_timestamp`.
   * @param onBackwards told (once per offending step) when a log to an earlier step was dropped.
   */
  constructor(
    private readonly emit: (row: Row) => void,
    private readonly clock: Clock,
    private readonly onBackwards: (step: number, current: number) => void,
    startMs = clock.now(),
  ) {
    this.startMs = startMs;
  }

  get step(): number {
    return this.current;
  }

  runtimeSeconds(): number {
    return (this.clock.now() - this.startMs) / 1000;
  }

  log(values: Row, step: number): void {
    if (step < this.current) {
      this.onBackwards(step, this.current);
      return;
    }
    if (step > this.current) {
      this.flush();
      this.current = step;
    }
    this.pending = Object.assign(this.pending ?? {}, values);
  }

  /** Closes the pending row, if any. A later log at the same step starts a new row for that step. */
  flush(): void {
    if (!this.pending) return;
    const now = this.clock.now();
    const row: Row = { ...this.pending, _step: this.current, _runtime: (now - this.startMs) / 1000, _timestamp: now / 1000 };
    this.pending = undefined;
    this.emit(row);
  }
}

/** What one training step logs (fastai WandbCallback.after_batch plus the seed's DANN losses). */
export function trainStepValues(s: LoopState): Row {
  const v: Row = {};
  if (s.regressionLoss !== undefined) v.regression_loss = s.regressionLoss;
  if (s.domainLoss !== undefined) v.domain_loss = s.domainLoss;
  if (s.smoothLoss !== undefined) v.train_loss = s.smoothLoss;
  if (s.loss !== undefined) v.raw_loss = s.loss;
  s.hypers.forEach((h, i) => {
    v[`wd_${i}`] = h.wd;
    v[`sqr_mom_${i}`] = h.sqrMom;
    v[`lr_${i}`] = h.lr;
    v[`mom_${i}`] = h.mom;
    v[`eps_${i}`] = h.eps;
  });
  v.alpha = s.alpha;
  v.epoch = s.epochFloat;
  return v;
}

/** What a validation logs: the loop's metrics as named (valid_loss, rmse_<output>, domain_accuracy, target_*). */
export function validationValues(s: LoopState): Row {
  return { ...(s.metrics ?? {}) };
}

/** fastai's after_epoch: the epoch counter rounded to a whole epoch at the epoch's last step. */
export function epochEndValues(s: LoopState): Row {
  return { epoch: Math.round(s.epochFloat) };
}

export interface Histogram {
  _type: 'histogram';
  values: number[];
  bins: number[];
}

/**
 * wandb.watch's histogram of a tensor: `bins` equal-width bins over [min, max] of the finite values
 * (NaN and ±Infinity left out), the maximum counted in the last bin; one bin when all values are equal;
 * undefined when no value is finite.
 */
export function histogram(data: ArrayLike<number>, bins = 64): Histogram | undefined {
  let min = Infinity;
  let max = -Infinity;
  let finite = 0;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!Number.isFinite(x)) continue;
    finite++;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  if (finite === 0) return undefined;
  if (min === max) return { _type: 'histogram', values: [finite], bins: [min, max] };
  const counts = new Array<number>(bins).fill(0);
  const scale = bins / (max - min);
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!Number.isFinite(x)) continue;
    counts[Math.min(bins - 1, Math.floor((x - min) * scale))]++;
  }
  const edges = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? max : min + ((max - min) * i) / bins));
  return { _type: 'histogram', values: counts, bins: edges };
}

/** `parameters/<name>` and `gradients/<name>` histograms, as wandb.watch(log="all") names them. */
export function tensorHistograms(s: LoopState, bins = 64): Row {
  const v: Row = {};
  for (const [prefix, views] of [['parameters', s.parameters?.()], ['gradients', s.gradients?.()]] as const) {
    for (const [name, data] of views ?? []) {
      const h = histogram(data, bins);
      if (h) v[`${prefix}/${name}`] = h;
    }
  }
  return v;
}
