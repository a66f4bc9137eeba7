/**
 * The seed's per-epoch validation (DANNValidationCallback): eval-mode passes over the source and
 * target validation sets, scored by Metric objects under the seed's names — valid_loss,
 * rmse_<output> (or accuracy), domain_accuracy, and with target labels target_rmse_/target_mae_<output>
 * (or target_accuracy).
 */
import { accumulateAll, Accuracy, DomainAccuracy, type Metric, regressionMetrics, WeightedMean } from '../metrics.ts';
import { combineBatches, dannEvalStep } from './dann-step.ts';
import type { TrainingSession } from './session.ts';
import type { BatchSource } from './types.ts';

export interface ValidationSetup {
  task: 'regression' | 'classification';
  outputNames: readonly string[];
  /** A target validation set is present (domain_accuracy). */
  target: boolean;
  /** The target validation set has labels (target_* metrics). */
  targetLabelled: boolean;
}

export class DannValidation {
  readonly loss = new WeightedMean('valid_loss');
  readonly source: Metric[];
  readonly domain?: DomainAccuracy;
  readonly target: Metric[];
  private readonly width: number;

  constructor(setup: ValidationSetup) {
    this.width = setup.outputNames.length;
    const layout = { width: setup.outputNames.length, truthWidth: 1 };
    const classification = setup.task === 'classification';
    this.source = classification ? [new Accuracy('accuracy', layout)] : regressionMetrics(setup.outputNames, ['rmse']);
    if (setup.target) this.domain = new DomainAccuracy();
    this.target = !setup.targetLabelled ? [] : classification ? [new Accuracy('target_accuracy', layout)] : regressionMetrics(setup.outputNames, ['rmse', 'mae'], 'target_');
  }

  /** Every metric, in the order they are reported. */
  get metrics(): Metric<never>[] {
    return [this.loss, ...this.source, ...(this.domain ? [this.domain] : []), ...this.target];
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
      const r = await dannEvalStep(o.session, batch, o.lambdaDomain);
      this.loss.accumulate({ value: r.loss, weight: s.count });
      this.domain?.accumulate({ logits: r.domainLogit, count: batch.count, nSource: s.count });
      accumulateAll(this.source, { rows: s.count, prediction: r.prediction, truth: s.labels! });
      if (t?.labels) accumulateAll(this.target, { rows: t.count, prediction: r.prediction.subarray(s.count * this.width), truth: t.labels });
    }
    return Object.fromEntries(this.metrics.map((m) => [m.name, m.value()]));
  }
}
