/**
 * The DANN fit loop (the seed's train_dann + DANNCallback under fine_tune_dann's schedule), as
 * events: combined source/target batches with source rows first, alpha from the fraction of all
 * planned iterations, per-epoch validation on source and target. What happens at those events —
 * checkpoints, the NaN policy, early stopping, progress, trackers — is the callbacks' business
 * (callbacks.ts, recorder.ts, progress.ts, src/tracking). Resumable at any step boundary.
 */
import { combineBatches, dannTrainStep } from './dann-step.ts';
import { type FineTunePlan } from './schedules.ts';
import { type TrainingSession } from './session.ts';
import { standardize, type TargetScaling } from './standardize.ts';
import type { BatchSource, Callback, LoopState } from './types.ts';
import { DannValidation } from './validate.ts';

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
  /** The validation metrics; by default those of the session's model and the validation sets given. */
  validation?: DannValidation;
  /** Where to continue: the optimizer step and each training source's position (from a checkpoint). */
  resume?: { step: number; sources: Record<string, number> };
  /** Polled between steps: true ends the fit as a resumable stop (Ctrl-C). */
  interrupted?: () => boolean;
  /** Regression only: the loss sees standardized labels; metrics stay in original units. */
  targetScaling?: TargetScaling;
}

export interface FitResult {
  state: LoopState;
  /** A stop was requested (Ctrl-C, W&B's Stop button): the run can be resumed. */
  stoppedEarly: boolean;
}

/** The validation metrics fit uses for these validation sets. */
export function validationFor(session: TrainingSession, targetVal: BatchSource | undefined, o: { domainTrained?: boolean; targetScaling?: TargetScaling } = {}): DannValidation {
  const { task, outputs } = session.manifest.config;
  return new DannValidation({ task, outputNames: outputs, target: targetVal !== undefined, targetLabelled: targetVal?.labelled ?? false, ...o });
}

export async function fit(o: FitOptions): Promise<FitResult> {
  const { session, plan } = o;
  const sources = { source: o.source, target: o.target };
  const validation = o.validation ?? validationFor(session, o.targetVal, { domainTrained: o.target !== undefined, targetScaling: o.targetScaling });
  const started = performance.now();
  const state: LoopState = {
    epoch: 0, epochFloat: 0, step: o.resume?.step ?? 0, totalSteps: plan.totalSteps, progress: 0, alpha: 0,
    lambdaDomain: o.target ? o.lambdaDomain : 0, hypers: [], elapsed: 0,
    parameters: () => session.parameterViews(),
    gradients: () => session.gradientViews(),
    sourcePositions: () => Object.fromEntries(Object.entries(sources).filter(([, s]) => s?.position !== undefined).map(([k, s]) => [k, s!.position!])),
  };
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

  let fitError: unknown;
  let currentPhase = -1;
  const firstStep = state.step;
  try {
    for (let step = state.step; step < plan.totalSteps; step++) {
      const point = plan.at(step);
      if (point.phaseIndex !== currentPhase) {
        // fine_tune is two fits: freeze_to and a fresh optimizer at each, unless we resume inside the phase.
        if (currentPhase >= 0) await emit('afterFit');
        currentPhase = point.phaseIndex;
        session.freezeTo(point.phase.freezeTo);
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
      const batch = combineBatches(s, t);
      if (o.targetScaling) batch.labels = standardize(batch.labels, o.targetScaling);
      const losses = await dannTrainStep(session, batch, { alpha: state.alpha, lambdaDomain: state.lambdaDomain });
      Object.assign(state, { loss: losses.loss, regressionLoss: losses.regressionLoss, domainLoss: losses.domainLoss, skipStep: false, nonFiniteWeights: false });
      await emit('afterBackward');
      if (!state.skipStep) {
        // The optimizer reports whether every weight it updated is finite; the NaN policy acts on it.
        state.nonFiniteWeights = !(await session.runOptimizerStep(point.hypers));
        await emit('afterStep');
      }
      Object.assign(state, { step: step + 1, elapsed: (performance.now() - started) / 1000 });
      state.epochFloat = state.step / plan.nIter;
      await emit('afterBatch');
      if (state.step % plan.nIter === 0) {
        state.metrics = await validation.run({ session, sourceVal: o.sourceVal, targetVal: o.targetVal, batchSize: o.batchSize, steps: o.valSteps, lambdaDomain: o.lambdaDomain });
        await emit('afterValidate');
        await emit('afterEpoch');
        if (state.finishRequested) break;
      }
      if (state.stopRequested || o.interrupted?.()) {
        stoppedEarly = true;
        await emit('afterCancelFit');
        break;
      }
    }
  } catch (e) {
    fitError = e;
  }
  await emit('afterFit', fitError);
  if (fitError) throw fitError;
  return { state, stoppedEarly };
}
