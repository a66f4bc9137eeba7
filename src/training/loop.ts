/**
 * The DANN fit loop (the seed's train_dann + DANNCallback + DANNValidationCallback + SaveModelCallback,
 * under fine_tune_dann's schedule): combined source/target batches with source rows first, alpha from
 * the fraction of all planned iterations, per-epoch validation on source and target, the latest
 * checkpoint every epoch and the best by the monitored metric, all resumable at epoch boundaries.
 */
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { type FineTunePlan } from './schedules.ts';
import { type EvalResult, type TrainingSession } from './session.ts';
import { destandardize, standardize, type TargetScaling } from './standardize.ts';
import { deepEmbeddedValidation } from './dev.ts';
import type { BatchSource, Callback, ImageBatch, LoopState } from './types.ts';

export interface FitOptions {
  session: TrainingSession;
  source: BatchSource;
  /** Unlabelled target domain; absent for the source-only baseline. */
  target?: BatchSource;
  sourceVal: BatchSource;
  targetVal?: BatchSource;
  /** Samples per domain in each batch (the seed's batch_size). */
  batchSize: number;
  /** Validation batches per epoch (per domain). */
  valSteps: number;
  plan: FineTunePlan;
  lambdaDomain: number;
  callbacks: Callback[];
  /** Checkpoints go to `<runDir>/latest` and `<runDir>/best`. */
  runDir: string;
  monitor: { name: string; mode: 'min' | 'max' };
  /** Trainer state of the checkpoint to continue from (epoch boundary). */
  resume?: ResumeState;
  /** NaN/Inf loss or gradient: stop (default) or skip the batch. */
  onNonFinite?: 'stop' | 'skip';
  /** Polled between steps: true ends the fit after saving the latest checkpoint (Ctrl-C, W&B stop). */
  interrupted?: () => boolean;
  outputNames: string[];
  task: 'regression' | 'classification';
  /** Regression only: the loss sees standardized labels; metrics stay in original units. */
  targetScaling?: TargetScaling;
}

export interface ResumeState {
  step: number;
  best?: number;
  bestEpoch?: number;
  sources: Record<string, number>;
}

export interface FitResult {
  state: LoopState;
  best?: { value: number; epoch: number };
  stoppedEarly: boolean;
  skippedBatches: number;
}

/** The combined batch's images: source rows first, then target rows. */
export function concatBatches(a: ImageBatch, b: ImageBatch | undefined): Float32Array {
  if (!b) return a.images;
  const out = new Float32Array(a.images.length + b.images.length);
  out.set(a.images);
  out.set(b.images, a.images.length);
  return out;
}

function allFinite(values: Float32Array): boolean {
  // One pass: any NaN or ±Inf makes the sum non-finite.
  let sum = 0;
  for (let k = 0; k < values.length; k++) sum += values[k] * 0;
  return Number.isFinite(sum);
}

/** Validation metrics with the seed's names: valid_loss, rmse_<output>, domain_accuracy, target_rmse_/target_mae_<output>. */
async function validate(o: FitOptions): Promise<Record<string, number>> {
  const K = o.outputNames.length;
  const classification = o.task === 'classification';
  let lossSum = 0;
  let lossCount = 0;
  let domainCorrect = 0;
  let domainTotal = 0;
  const sq = new Float64Array(K);
  const tsq = new Float64Array(K);
  const tabs = new Float64Array(K);
  let sourceRows = 0;
  let targetRows = 0;
  let correct = 0;
  let targetCorrect = 0;
  // DEV (dev.ts) needs a trained domain head: DANN runs only. Per-row losses in the loss's own units.
  const devRows = o.target && o.targetVal && !classification ? { losses: [] as number[], logits: [] as number[], targets: 0 } : undefined;
  o.sourceVal.startEpoch(0);
  o.targetVal?.startEpoch(0);
  for (let b = 0; b < o.valSteps; b++) {
    const s = await o.sourceVal.nextBatch(o.batchSize);
    const t = o.targetVal ? await o.targetVal.nextBatch(o.batchSize) : undefined;
    const count = s.count + (t?.count ?? 0);
    const scaling = o.targetScaling;
    const r: EvalResult = await o.session.runEvalStep({ images: concatBatches(s, t), count, nSource: s.count, labels: scaling ? standardize(s.labels!, scaling) : s.labels!, lambdaDomain: o.lambdaDomain });
    if (scaling) r.prediction = destandardize(r.prediction, scaling);
    lossSum += r.loss * s.count;
    lossCount += s.count;
    for (let i = 0; i < count; i++) {
      const isTarget = i >= s.count;
      if ((r.domainLogit[i] > 0) === isTarget) domainCorrect++;
      domainTotal++;
    }
    const accumulate = (rows: number, offset: number, labels: Float32Array, target: boolean) => {
      for (let i = 0; i < rows; i++) {
        if (classification) {
          let arg = 0;
          for (let k = 1; k < K; k++) if (r.prediction[(offset + i) * K + k] > r.prediction[(offset + i) * K + arg]) arg = k;
          if (arg === labels[i]) target ? targetCorrect++ : correct++;
          continue;
        }
        for (let k = 0; k < K; k++) {
          const d = r.prediction[(offset + i) * K + k] - labels[i * K + k];
          if (target) { tsq[k] += d * d; tabs[k] += Math.abs(d); } else sq[k] += d * d;
        }
      }
    };
    accumulate(s.count, 0, s.labels!, false);
    if (devRows) {
      for (let i = 0; i < s.count; i++) {
        let l = 0;
        for (let k = 0; k < K; k++) l += ((r.prediction[i * K + k] - s.labels![i * K + k]) / (scaling?.std[k] ?? 1)) ** 2;
        devRows.losses.push(l / K);
        devRows.logits.push(r.domainLogit[i]);
      }
      devRows.targets += t?.count ?? 0;
    }
    sourceRows += s.count;
    if (t?.labels) {
      accumulate(t.count, s.count, t.labels, true);
      targetRows += t.count;
    }
  }
  const metrics: Record<string, number> = { valid_loss: lossSum / Math.max(1, lossCount) };
  if (classification) metrics.accuracy = correct / Math.max(1, sourceRows);
  else o.outputNames.forEach((name, k) => { metrics[`rmse_${name}`] = Math.sqrt(sq[k] / Math.max(1, sourceRows)); });
  if (o.targetVal) metrics.domain_accuracy = domainCorrect / Math.max(1, domainTotal);
  if (devRows) metrics.dev = deepEmbeddedValidation(devRows.losses, devRows.logits, devRows.losses.length, devRows.targets);
  if (targetRows > 0) {
    if (classification) metrics.target_accuracy = targetCorrect / targetRows;
    else o.outputNames.forEach((name, k) => {
      metrics[`target_rmse_${name}`] = Math.sqrt(tsq[k] / targetRows);
      metrics[`target_mae_${name}`] = tabs[k] / targetRows;
    });
  }
  return metrics;
}

export async function fit(o: FitOptions): Promise<FitResult> {
  const { session, plan } = o;
  const sources = { source: o.source, target: o.target };
  const started = performance.now();
  const state: LoopState = {
    epoch: 0, epochFloat: 0, step: o.resume?.step ?? 0, totalSteps: plan.totalSteps, progress: 0, alpha: 0,
    lambdaDomain: o.target ? o.lambdaDomain : 0, hypers: [], elapsed: 0,
    parameters: () => session.parameterViews(),
    gradients: () => session.gradientViews(),
  };
  let best = o.resume?.best !== undefined ? { value: o.resume.best, epoch: o.resume.bestEpoch ?? 0 } : undefined;
  let skipped = 0;
  let stoppedEarly = false;
  const emit = async (hook: keyof Callback, error?: unknown) => {
    for (const cb of o.callbacks) {
      const f = cb[hook] as ((s: LoopState, e?: unknown) => void | Promise<void>) | undefined;
      if (f) await f.call(cb, state, error);
    }
  };
  if (o.resume && state.step < plan.totalSteps) {
    // Mid-epoch resume: restore the epoch's shuffle first, then the position inside it.
    const epoch = plan.at(state.step).epoch;
    if (state.step % plan.nIter !== 0) for (const src of Object.values(sources)) src?.startEpoch(epoch);
    for (const [name, src] of Object.entries(sources)) if (src?.seek && o.resume.sources[name] !== undefined) src.seek(o.resume.sources[name]);
  }

  // A resumed run starts from a saved latest checkpoint; a new one has none until its first save.
  let latestSaved = o.resume !== undefined;
  const saveLatest = async () => {
    await session.saveCheckpoint(join(o.runDir, 'latest'), {
      step: state.step, best: best?.value, bestEpoch: best?.epoch,
      sources: Object.fromEntries(Object.entries(sources).filter(([, s]) => s?.position !== undefined).map(([k, s]) => [k, s!.position!])),
    } satisfies ResumeState);
    latestSaved = true;
  };

  let fitError: unknown;
  let currentPhase = -1;
  const firstStep = state.step;
  try {
    for (let step = state.step; step < plan.totalSteps; step++) {
      const point = plan.at(step);
      if (point.phaseIndex !== currentPhase) {
        if (currentPhase >= 0) await emit('afterFit');
        currentPhase = point.phaseIndex;
        session.freezeTo(point.phase.freezeTo);
        // freeze_to/unfreeze clear Adam's state, unless we resume inside the phase.
        if (point.phaseStep === 0) session.resetOptimizerState();
        await emit('beforeFit');
      }
      // A resumed run starts its (partial) epoch at its first step.
      const epochStart = step % plan.nIter === 0 || step === firstStep;
      Object.assign(state, { epoch: point.epoch, epochFloat: step / plan.nIter, progress: point.progress, alpha: o.target ? point.alpha : 0, hypers: point.hypers });
      if (step % plan.nIter === 0) {
        o.source.startEpoch(point.epoch);
        o.target?.startEpoch(point.epoch);
      }
      if (epochStart) await emit('beforeEpoch');
      await emit('beforeBatch');
      const s = await o.source.nextBatch(o.batchSize);
      const t = o.target ? await o.target.nextBatch(o.batchSize) : undefined;
      session.lazyResetGrad();
      const losses = await session.runTrainStep({
        images: concatBatches(s, t), count: s.count + (t?.count ?? 0), nSource: s.count,
        labels: o.targetScaling ? standardize(s.labels!, o.targetScaling) : s.labels!,
        alpha: state.alpha, lambdaDomain: state.lambdaDomain,
      });
      if (!Number.isFinite(losses.loss) || !allFinite(session.gradients)) {
        if (o.onNonFinite === 'skip') {
          skipped++;
          process.stderr.write(`ort-dann: warning: step ${step + 1}: the loss or a gradient is NaN/Inf; batch skipped (${skipped} so far)\n`);
        } else {
          const what = Number.isFinite(losses.loss) ? `a gradient is NaN/Inf (the loss is ${losses.loss})` : `the loss is ${losses.loss}`;
          const kept = latestSaved ? `; the last good checkpoint is ${join(o.runDir, 'latest')}` : ' before the first checkpoint';
          throw new UserError(`step ${step + 1}: ${what}; training stopped${kept} (lower --lr, check labels, or pass --on-nan skip)`);
        }
      } else {
        await session.runOptimizerStep(point.hypers);
      }
      Object.assign(state, { step: step + 1, loss: losses.loss, regressionLoss: losses.regressionLoss, domainLoss: losses.domainLoss, elapsed: (performance.now() - started) / 1000 });
      state.epochFloat = state.step / plan.nIter;
      await emit('afterBatch');
      const epochEnd = state.step % plan.nIter === 0;
      if (epochEnd) {
        state.metrics = await validate(o);
        await emit('afterValidate');
        const value = state.metrics[o.monitor.name];
        if (value === undefined) throw new UserError(`--monitor ${o.monitor.name}: no such metric; choose one of ${Object.keys(state.metrics).join(', ')}`);
        const improved = best === undefined || (o.monitor.mode === 'min' ? value < best.value : value > best.value);
        if (improved && Number.isFinite(value)) {
          best = { value, epoch: point.epoch };
          await session.saveCheckpoint(join(o.runDir, 'best'), { step: state.step, epoch: point.epoch, [o.monitor.name]: value });
        }
        await saveLatest();
        await emit('afterEpoch');
      }
      if (state.stopRequested || o.interrupted?.()) {
        stoppedEarly = true;
        if (!epochEnd) await saveLatest();
        break;
      }
    }
  } catch (e) {
    fitError = e;
  }
  await emit('afterFit', fitError);
  if (fitError) throw fitError;
  return { state, best, stoppedEarly, skippedBatches: skipped };
}
