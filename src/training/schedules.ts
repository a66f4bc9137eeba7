/**
 * fastai's hyper-parameter schedules (1cycle, discriminative learning rates, fine_tune) and the DANN
 * gradient-reversal coefficient, as pure functions of the step index, so a resumed run lands on the
 * same values as an uninterrupted one.
 * Reference: docs/fastai-semantics.md §1–3, and the seed's `fine_tune_dann`.
 */
import type { GroupHyper } from './types.ts';

/** fastai `Learner.moms`: mom (Adam β1) goes 0.95 → 0.85 → 0.95 over a cycle. */
export const DEFAULT_MOMS: readonly [number, number, number] = [0.95, 0.85, 0.95];

/** fastai `Adam` defaults. `wd` stays 0.01 because neither the seed's Learner nor fit_one_cycle sets one. */
export const ADAM_DEFAULTS = { sqrMom: 0.99, eps: 1e-5, wd: 0.01 } as const;

/** fastai `sched_cos`: cosine from `start` (pos 0) to `end` (pos 1), written in fastai's float64 form. */
export function schedCos(start: number, end: number, pos: number): number {
  return start + ((1 + Math.cos(Math.PI * (1 - pos))) * (end - start)) / 2;
}

/**
 * fastai `combined_cos(pct, start, middle, end)`: start → middle over the first `pct` of training,
 * then middle → end. fastai keeps the phase boundaries in a float32 tensor, so both the phase test and
 * the position inside a phase are float32; Math.fround reproduces that (float32 +,−,/ through float64
 * then fround are exact, the double rounding being innocuous at 53 ≥ 2·24+2 bits).
 */
export function combinedCos(pct: number, start: number, middle: number, end: number): (pos: number) => number {
  const p1 = Math.fround(pct);
  const p2 = Math.fround(p1 + Math.fround(1 - pct));
  const span2 = Math.fround(p2 - p1);
  return (pos: number) => {
    const x = Math.fround(pos);
    if (x < p1) return schedCos(start, middle, Math.fround(x / p1));
    return schedCos(middle, end, Math.fround(Math.fround(x - p1) / span2));
  };
}

/**
 * fastcore `even_mults`: `n` values growing geometrically from `start` to `stop`. fastcore returns the
 * bare `stop` for n = 1, which set_hyper then broadcasts, hence `[stop]`.
 */
export function evenMults(start: number, stop: number, n: number): number[] {
  if (n === 1) return [stop];
  const step = (stop / start) ** (1 / (n - 1));
  return Array.from({ length: n }, (_, i) => start * step ** i);
}

/**
 * Per-group learning rates of fastai's `slice(a, b)` (`_BaseOptimizer.set_hyper`): a truthy `a` spreads
 * geometrically from a to b; `slice(b)` (or a = 0) gives b/10 to every group but the last.
 */
export function lrsFromSlice(a: number | undefined, b: number, nGroups: number): number[] {
  if (nGroups < 1) throw new RangeError(`lrsFromSlice: nGroups must be ≥ 1, got ${nGroups}`);
  if (a) return evenMults(a, b, nGroups);
  return [...Array.from({ length: nGroups - 1 }, () => b / 10), b];
}

/**
 * DANN's gradient-reversal coefficient (Ganin et al.): 0 at the start, → 1 at the end. `p` is the
 * fraction of all planned training iterations already done (freeze and unfreeze phases together).
 */
export function dannAlpha(p: number): number {
  return 2 / (1 + Math.exp(-10 * p)) - 1;
}

export interface OneCycleOptions {
  /** Peak learning rate per parameter group. */
  lrMax: readonly number[];
  nEpoch: number;
  /** Training batches per epoch (`len(dls.train)`). */
  nIter: number;
  pctStart?: number;
  div?: number;
  divFinal?: number;
  moms?: readonly [number, number, number];
  wd?: number;
  sqrMom?: number;
  eps?: number;
}

/** fastai `fit_one_cycle`'s ParamScheduler: hyper-parameters for batch k of the fit. */
export class OneCycle {
  readonly totalSteps: number;
  readonly lrMax: readonly number[];
  readonly pctStart: number;
  readonly div: number;
  readonly divFinal: number;
  private readonly lrScheds: ((pos: number) => number)[];
  private readonly momSched: (pos: number) => number;
  private readonly wd: number;
  private readonly sqrMom: number;
  private readonly eps: number;

  constructor(o: OneCycleOptions) {
    if (!(o.nEpoch >= 0 && o.nIter > 0)) throw new RangeError(`OneCycle: need nEpoch ≥ 0 and nIter > 0 (got ${o.nEpoch}, ${o.nIter})`);
    this.lrMax = [...o.lrMax];
    this.pctStart = o.pctStart ?? 0.25;
    this.div = o.div ?? 25;
    this.divFinal = o.divFinal ?? 1e5;
    this.totalSteps = o.nEpoch * o.nIter;
    this.lrScheds = this.lrMax.map((m) => combinedCos(this.pctStart, m / this.div, m, m / this.divFinal));
    this.momSched = combinedCos(this.pctStart, ...(o.moms ?? DEFAULT_MOMS));
    this.wd = o.wd ?? ADAM_DEFAULTS.wd;
    this.sqrMom = o.sqrMom ?? ADAM_DEFAULTS.sqrMom;
    this.eps = o.eps ?? ADAM_DEFAULTS.eps;
  }

  /** fastai's `pct_train` before batch k: k/(n_epoch·n_iter), never reaching 1. */
  pos(k: number): number {
    return k / this.totalSteps;
  }

  lrs(k: number): number[] {
    const pos = this.pos(k);
    return this.lrScheds.map((f) => f(pos));
  }

  /** One scalar for every group, as fastai broadcasts it. */
  mom(k: number): number {
    return this.momSched(this.pos(k));
  }

  hypers(k: number): GroupHyper[] {
    const mom = this.mom(k);
    return this.lrs(k).map((lr) => ({ lr, mom, sqrMom: this.sqrMom, wd: this.wd, eps: this.eps }));
  }
}

/** One `fit_one_cycle` call of a fine-tuning recipe. */
export interface FitPhase {
  name: 'frozen' | 'unfrozen';
  epochs: number;
  /** Groups [0, freezeTo) are frozen, except their BatchNorm params (fastai train_bn); 0 = all trainable. */
  freezeTo: number;
  /** fastai's freeze_to/unfreeze clear the Adam state, and each phase starts with one. */
  resetOptimizerState: true;
  /** Global index of the phase's first step and its step count. */
  firstStep: number;
  steps: number;
  schedule: OneCycle;
}

/** Where a global step falls in a plan, with everything the loop sets before that batch. */
export interface PlanPoint {
  phaseIndex: number;
  phase: FitPhase;
  /** Step inside the phase (fastai's batch index in that fit). */
  phaseStep: number;
  /** Global 0-based epoch, counting the frozen epochs first. */
  epoch: number;
  /** 0-based epoch inside the phase: fastai numbers each fit's table from 0. */
  phaseEpoch: number;
  hypers: GroupHyper[];
  /** Fraction of all planned iterations done before this batch. */
  progress: number;
  alpha: number;
}

export interface FineTuneDannOptions {
  /** Epochs after unfreezing (the seed's `epochs`). */
  epochs: number;
  freezeEpochs?: number;
  baseLr?: number;
  lrMult?: number;
  pctStart?: number;
  div?: number;
  /**
   * Parameter groups, empty ones included: with the seed's five (the last, grl, has no parameters),
   * slice(base_lr) gives every real group base_lr/10 in phase 1, as it did in the seed.
   */
  nGroups: number;
  nIter: number;
  /**
   * Groups frozen in phase 1. The seed's fine_tune_dann calls `freeze_to(1)` (only the pretrained
   * resnet body); fastai's own fine_tune calls `freeze()`, i.e. nGroups − 1.
   */
  freezeTo?: number;
  moms?: readonly [number, number, number];
  wd?: number;
  sqrMom?: number;
  eps?: number;
}

export interface FineTunePlan {
  phases: FitPhase[];
  totalSteps: number;
  nIter: number;
  at(step: number): PlanPoint;
}

/**
 * The seed's `fine_tune_dann` (fastai's `fine_tune` with `freeze_to(1)`):
 *   1. freeze_to(1); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99)  (div 25)
 *   2. base_lr /= 2; unfreeze(); fit_one_cycle(epochs, slice(base_lr/lr_mult, base_lr), pct_start, div)
 * The seed keeps fastai's halving. Phase 1 is left out when freezeEpochs is 0 (fit_one_cycle(0) runs no
 * batch), but the halving still applies, as in fastai.
 */
export function fineTuneDannPlan(o: FineTuneDannOptions): FineTunePlan {
  const freezeEpochs = o.freezeEpochs ?? 1;
  let baseLr = o.baseLr ?? 2e-3;
  const lrMult = o.lrMult ?? 100;
  const common = { nIter: o.nIter, moms: o.moms, wd: o.wd, sqrMom: o.sqrMom, eps: o.eps };
  const phases: FitPhase[] = [];
  let first = 0;
  const add = (name: FitPhase['name'], epochs: number, freezeTo: number, schedule: OneCycle) => {
    phases.push({ name, epochs, freezeTo, resetOptimizerState: true, firstStep: first, steps: schedule.totalSteps, schedule });
    first += schedule.totalSteps;
  };
  if (freezeEpochs > 0) {
    const lrMax = lrsFromSlice(undefined, baseLr, o.nGroups);
    add('frozen', freezeEpochs, o.freezeTo ?? 1, new OneCycle({ ...common, lrMax, nEpoch: freezeEpochs, pctStart: 0.99 }));
  }
  baseLr /= 2;
  const lrMax = lrsFromSlice(baseLr / lrMult, baseLr, o.nGroups);
  add('unfrozen', o.epochs, 0, new OneCycle({ ...common, lrMax, nEpoch: o.epochs, pctStart: o.pctStart ?? 0.3, div: o.div ?? 5 }));
  const totalSteps = first;

  const at = (step: number): PlanPoint => {
    if (!(Number.isInteger(step) && step >= 0 && step < totalSteps)) {
      throw new RangeError(`plan step ${step} outside [0, ${totalSteps})`);
    }
    const phaseIndex = phases.findIndex((p) => step < p.firstStep + p.steps);
    const phase = phases[phaseIndex];
    const phaseStep = step - phase.firstStep;
    const progress = step / totalSteps;
    return {
      phaseIndex,
      phase,
      phaseStep,
      epoch: Math.floor(step / o.nIter),
      phaseEpoch: Math.floor(phaseStep / o.nIter),
      hypers: phase.schedule.hypers(phaseStep),
      progress,
      alpha: dannAlpha(progress),
    };
  };
  return { phases, totalSteps, nIter: o.nIter, at };
}
