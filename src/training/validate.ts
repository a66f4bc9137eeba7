/**
 * The seed's per-epoch validation (DANNValidationCallback): eval-mode passes over the source and
 * target validation sets, scored by Metric objects under the seed's names — valid_loss,
 * rmse_<output> (or accuracy), domain_accuracy, and with target labels target_rmse_/target_mae_<output>
 * (or target_accuracy).
 */
import { accumulateAll, Accuracy, DomainAccuracy, type Metric, regressionMetrics, WeightedMean } from '../metrics.ts';
import { combineBatches, dannEvalStep } from './dann-step.ts';
import { DeepEmbeddedValidation } from './dev.ts';
import type { TrainingSession } from './session.ts';
import { destandardize, standardize, type TargetScaling } from './standardize.ts';
import type { BatchSource } from './types.ts';

export interface ValidationSetup {
  task: 'regression' | 'classification';
  outputNames: readonly string[];
  /** A target validation set is present (domain_accuracy). */
  target: boolean;
  /** The target validation set has labels (target_* metrics). */
  targetLabelled: boolean;
  /** The domain head trains (a DANN run): DEV can weight source losses by it. */
  domainTrained?: boolean;
  /** Regression trained on standardized labels: the loss sees them so, metrics stay in original units. */
  targetScaling?: TargetScaling;
}

export class DannValidation {
  readonly loss = new WeightedMean('valid_loss');
  readonly source: Metric[];
  readonly domain?: DomainAccuracy;
  readonly target: Metric[];
  readonly dev?: DeepEmbeddedValidation;
  private readonly width: number;
  private readonly scaling?: TargetScaling;

  constructor(setup: ValidationSetup) {
    this.width = setup.outputNames.length;
    this.scaling = setup.targetScaling;
    const layout = { width: setup.outputNames.length, truthWidth: 1 };
    const classification = setup.task === 'classification';
    this.source = classification ? [new Accuracy('accuracy', layout)] : regressionMetrics(setup.outputNames, ['rmse']);
    if (setup.target) this.domain = new DomainAccuracy();
    // DEV needs a trained domain head and per-row regression losses.
    if (setup.domainTrained && setup.target && !classification) this.dev = new DeepEmbeddedValidation();
    this.target = !setup.targetLabelled ? [] : classification ? [new Accuracy('target_accuracy', layout)] : regressionMetrics(setup.outputNames, ['rmse', 'mae'], 'target_');
  }

  /** Every metric, in the order they are reported. */
  get metrics(): Metric<never>[] {
    return [this.loss, ...this.source, ...(this.domain ? [this.domain] : []), ...(this.dev ? [this.dev] : []), ...this.target];
  }

  /** The metric logged under `name`, for a monitor. */
  find(name: string): Metric<never> | undefined {
    return this.metrics.find((m) => m.name === name);
  }

  async run(o: { session: TrainingSession; sourceVal: BatchSource; targetVal?: BatchSource; batchSize: number; steps: number; lambdaDomain: number }): Promise<Record<string, number>> {
    for (const m of this.metrics) m.reset();
    o.sourceVal.startEpoch(0);
    o.targetVal?.startEpoch(0);
    for (let b = 0; b < o.steps; b++) {
      const s = await o.sourceVal.nextBatch(o.batchSize);
      const t = o.targetVal ? await o.targetVal.nextBatch(o.batchSize) : undefined;
      const batch = combineBatches(s, t);
      if (this.scaling) batch.labels = standardize(batch.labels, this.scaling);
      const r = await dannEvalStep(o.session, batch, o.lambdaDomain);
      if (this.scaling) r.prediction = destandardize(r.prediction, this.scaling);
      this.loss.accumulate({ value: r.loss, weight: s.count });
      this.dev?.accumulate({ losses: this.rowLosses(r.prediction, s.labels!, s.count), logits: r.domainLogit.subarray(0, s.count), targets: t?.count ?? 0 });
      this.domain?.accumulate({ logits: r.domainLogit, count: batch.count, nSource: s.count });
      accumulateAll(this.source, { rows: s.count, prediction: r.prediction, truth: s.labels! });
      if (t?.labels) accumulateAll(this.target, { rows: t.count, prediction: r.prediction.subarray(s.count * this.width), truth: t.labels });
    }
    return Object.fromEntries(this.metrics.map((m) => [m.name, m.value()]));
  }

  /** Each source row's mean squared error in the loss's units (standardized when training was). */
  private rowLosses(prediction: Float32Array, truth: Float32Array, rows: number): Float64Array {
    const K = this.width;
    const out = new Float64Array(rows);
    for (let i = 0; i < rows; i++) {
      let l = 0;
      for (let k = 0; k < K; k++) l += ((prediction[i * K + k] - truth[i * K + k]) / (this.scaling?.std[k] ?? 1)) ** 2;
      out[i] = l / K;
    }
    return out;
  }
}
