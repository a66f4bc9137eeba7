/**
 * Metrics as small objects (fastai's Metric: reset, accumulate, value), each with the name it is
 * logged under and whether lower or higher is better. Validation during training, `evaluate` and
 * `compare` all score with these, so an RMSE is computed one way everywhere and a monitored metric
 * carries its own direction.
 */

export type Direction = 'min' | 'max';

export interface Metric<B = Rows> {
  readonly name: string;
  readonly direction: Direction;
  reset(): void;
  accumulate(batch: B): void;
  /** The value over everything accumulated since the last reset (a count of 0 gives 0). */
  value(): number;
}

/** Predictions of a batch beside their truth, row by row. */
export interface Rows {
  rows: number;
  /** [rows, width]: regression values, or class scores (logits or probabilities). */
  prediction: ArrayLike<number>;
  /** [rows, truthWidth]: regression truth, or the class index in column 0. */
  truth: ArrayLike<number>;
}

/** True when `candidate` beats `incumbent` under `direction` (ties do not). */
export function improves(direction: Direction, candidate: number, incumbent: number): boolean {
  return direction === 'min' ? candidate < incumbent : candidate > incumbent;
}

interface ColumnLayout {
  /** Columns of a prediction row. */
  width: number;
  /** Columns of a truth row (default `width`). */
  truthWidth?: number;
}

abstract class ColumnError implements Metric {
  /** Errors: lower is better. */
  static readonly direction: Direction = 'min';
  readonly direction = ColumnError.direction;
  protected sum = 0;
  protected n = 0;
  private readonly width: number;
  private readonly truthWidth: number;

  constructor(readonly name: string, private readonly column: number, layout: ColumnLayout) {
    this.width = layout.width;
    this.truthWidth = layout.truthWidth ?? layout.width;
  }

  reset(): void {
    this.sum = 0;
    this.n = 0;
  }

  accumulate(b: Rows): void {
    for (let i = 0; i < b.rows; i++) this.sum += this.term(b.prediction[i * this.width + this.column] - b.truth[i * this.truthWidth + this.column]);
    this.n += b.rows;
  }

  protected abstract term(difference: number): number;
  abstract value(): number;
}

/** Root mean squared error of one output column. */
export class Rmse extends ColumnError {
  protected term(d: number): number {
    return d * d;
  }

  value(): number {
    return Math.sqrt(this.sum / Math.max(1, this.n));
  }
}

/** Mean absolute error of one output column. */
export class Mae extends ColumnError {
  protected term(d: number): number {
    return Math.abs(d);
  }

  value(): number {
    return this.sum / Math.max(1, this.n);
  }
}

/** The first largest score's index, as argmax picks it. */
function argmax(scores: ArrayLike<number>, offset: number, width: number): number {
  let best = 0;
  for (let k = 1; k < width; k++) if (scores[offset + k] > scores[offset + best]) best = k;
  return best;
}

/** Fraction of rows whose highest-scoring class is the true class. */
export class Accuracy implements Metric {
  readonly direction = 'max';
  private correct = 0;
  private n = 0;

  constructor(readonly name: string, private readonly layout: ColumnLayout) {}

  reset(): void {
    this.correct = 0;
    this.n = 0;
  }

  accumulate(b: Rows): void {
    const { width } = this.layout;
    const truthWidth = this.layout.truthWidth ?? width;
    for (let i = 0; i < b.rows; i++) if (argmax(b.prediction, i * width, width) === b.truth[i * truthWidth]) this.correct++;
    this.n += b.rows;
  }

  value(): number {
    return this.correct / Math.max(1, this.n);
  }
}

/** Mean negative log-probability of the true class; the prediction rows are probabilities. */
export class CrossEntropy implements Metric {
  readonly direction = 'min';
  private nll = 0;
  private n = 0;

  constructor(readonly name: string, private readonly layout: ColumnLayout) {}

  reset(): void {
    this.nll = 0;
    this.n = 0;
  }

  accumulate(b: Rows): void {
    const { width } = this.layout;
    const truthWidth = this.layout.truthWidth ?? width;
    // Clamped so one confident miss gives a large, finite loss.
    for (let i = 0; i < b.rows; i++) this.nll -= Math.log(Math.max(b.prediction[i * width + b.truth[i * truthWidth]], 1e-300));
    this.n += b.rows;
  }

  value(): number {
    return this.nll / Math.max(1, this.n);
  }
}

/** A batch-mean value (such as a loss) averaged over batches, weighted by each batch's rows. */
export class WeightedMean implements Metric<{ value: number; weight: number }> {
  private sum = 0;
  private weight = 0;

  constructor(readonly name: string, readonly direction: Direction = 'min') {}

  reset(): void {
    this.sum = 0;
    this.weight = 0;
  }

  accumulate(b: { value: number; weight: number }): void {
    this.sum += b.value * b.weight;
    this.weight += b.weight;
  }

  value(): number {
    return this.sum / Math.max(1, this.weight);
  }
}

/** Rows of a combined batch scored by a one-logit domain classifier: source rows first, then target rows. */
export interface DomainRows {
  logits: ArrayLike<number>;
  count: number;
  nSource: number;
}

/**
 * How often the domain classifier tells the domains apart (logit > 0 means target). Logged and
 * monitored as a higher-is-better accuracy, like the seed's metric of the same name; near 0.5 is what
 * adaptation aims for, so monitor it only to watch the classifier, not to pick a model.
 */
export class DomainAccuracy implements Metric<DomainRows> {
  readonly direction = 'max';
  private correct = 0;
  private n = 0;

  constructor(readonly name = 'domain_accuracy') {}

  reset(): void {
    this.correct = 0;
    this.n = 0;
  }

  accumulate(b: DomainRows): void {
    for (let i = 0; i < b.count; i++) if ((b.logits[i] > 0) === (i >= b.nSource)) this.correct++;
    this.n += b.count;
  }

  value(): number {
    return this.correct / Math.max(1, this.n);
  }
}

/** The regression metrics of every output, named `<prefix><kind>_<output>`, e.g. rmse_depth or target_mae_depth. */
export function regressionMetrics(outputNames: readonly string[], kinds: readonly ('rmse' | 'mae')[], prefix = ''): Metric[] {
  const layout = { width: outputNames.length };
  return outputNames.flatMap((name, k) => kinds.map((kind) => (kind === 'rmse' ? new Rmse(`${prefix}rmse_${name}`, k, layout) : new Mae(`${prefix}mae_${name}`, k, layout))));
}

/** Accumulates one Rows batch into every metric of a set. */
export function accumulateAll(metrics: readonly Metric[], rows: Rows): void {
  for (const m of metrics) m.accumulate(rows);
}
