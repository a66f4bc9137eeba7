/**
 * The loop's own policies as callbacks (fastai's SaveModelCallback, TerminateOnNaN and
 * EarlyStoppingCallback): best and latest checkpoints, what a NaN/Inf does, stopping when the
 * monitored metric stalls. The loop itself only raises events.
 */
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { type Direction, improves } from '../metrics.ts';
import type { TrainingSession } from './session.ts';
import type { Callback, LoopState } from './types.ts';

/** What picks the best checkpoint or stops early: a metric's name and its direction. */
export interface Monitor {
  name: string;
  direction: Direction;
}

/** Trainer state saved beside the weights of `latest`: where to continue, and the best so far. */
export interface ResumeState {
  step: number;
  best?: number;
  bestEpoch?: number;
  sources: Record<string, number>;
  /** State of other callbacks that must survive a resume (e.g. early stopping's patience count). */
  callbacks?: Record<string, unknown>;
}

/** A callback whose counters belong in the checkpoint, so a resumed run continues them. */
export interface Checkpointed {
  readonly name: string;
  checkpointState(): unknown;
}

function monitored(state: LoopState, monitor: Monitor): number {
  const value = state.metrics?.[monitor.name];
  if (value === undefined) throw new UserError(`--monitor ${monitor.name}: no such metric; choose one of ${Object.keys(state.metrics ?? {}).join(', ')}`);
  return value;
}

/**
 * SaveModelCallback for a resumable run: after each validation, `<runDir>/best` when the monitored
 * metric improved and always `<runDir>/latest` (weights, optimizer and trainer state); when a stop is
 * requested mid-epoch, `latest` once more so no step is lost.
 */
export class SaveCheckpoints implements Callback {
  readonly name = 'checkpoints';
  best?: { value: number; epoch: number };
  private savedAtStep?: number;
  private latestSaved: boolean;

  constructor(private readonly o: { session: TrainingSession; runDir: string; monitor: Monitor; resume?: ResumeState; others?: Checkpointed[] }) {
    if (o.resume?.best !== undefined) this.best = { value: o.resume.best, epoch: o.resume.bestEpoch ?? 0 };
    // A resumed run starts from a saved latest checkpoint; a new one has none until its first save.
    this.latestSaved = o.resume !== undefined;
  }

  get latestDir(): string {
    return join(this.o.runDir, 'latest');
  }

  /** The newest complete checkpoint, if any was written (or resumed from). */
  get lastCheckpoint(): string | undefined {
    return this.latestSaved ? this.latestDir : undefined;
  }

  async afterValidate(state: LoopState): Promise<void> {
    const value = monitored(state, this.o.monitor);
    if (Number.isFinite(value) && (this.best === undefined || improves(this.o.monitor.direction, value, this.best.value))) {
      this.best = { value, epoch: state.epoch };
      // Export reads best/; resuming reads latest/, so best needs no optimizer state.
      await this.o.session.saveCheckpoint(join(this.o.runDir, 'best'), { step: state.step, epoch: state.epoch, [this.o.monitor.name]: value }, { weightsOnly: true });
    }
    await this.saveLatest(state);
  }

  async afterCancelFit(state: LoopState): Promise<void> {
    if (this.savedAtStep !== state.step) await this.saveLatest(state);
  }

  private async saveLatest(state: LoopState): Promise<void> {
    const others = this.o.others ?? [];
    await this.o.session.saveCheckpoint(this.latestDir, {
      step: state.step, best: this.best?.value, bestEpoch: this.best?.epoch, sources: state.sourcePositions?.() ?? {},
      ...(others.length > 0 ? { callbacks: Object.fromEntries(others.map((c) => [c.name, c.checkpointState()])) } : {}),
    } satisfies ResumeState);
    this.latestSaved = true;
    this.savedAtStep = state.step;
  }
}

function allFinite(values: Float32Array): boolean {
  // One pass: any NaN or ±Inf makes the sum non-finite.
  let sum = 0;
  for (let k = 0; k < values.length; k++) sum += values[k] * 0;
  return Number.isFinite(sum);
}

/**
 * TerminateOnNaN, with a choice: a NaN/Inf loss or gradient stops the run (keeping the last
 * checkpoint) or skips the batch; a NaN/Inf weight after the optimizer step always stops, since
 * skipping later batches cannot repair it.
 */
export class NanPolicy implements Callback {
  readonly name = 'nan-policy';
  skipped = 0;

  constructor(private readonly o: {
    mode: 'stop' | 'skip';
    gradients: () => Float32Array;
    /** The checkpoint a stopped run can resume from. */
    lastCheckpoint: () => string | undefined;
    warn?: (line: string) => void;
  }) {}

  afterBackward(state: LoopState): void {
    const loss = state.loss ?? NaN;
    if (Number.isFinite(loss) && allFinite(this.o.gradients())) return;
    if (this.o.mode === 'skip') {
      this.skipped++;
      state.skipStep = true;
      (this.o.warn ?? ((l) => process.stderr.write(`${l}\n`)))(`ort-dann: warning: step ${state.step + 1}: the loss or a gradient is NaN/Inf; batch skipped (${this.skipped} so far)`);
      return;
    }
    const what = Number.isFinite(loss) ? `a gradient is NaN/Inf (the loss is ${loss})` : `the loss is ${loss}`;
    throw new UserError(`step ${state.step + 1}: ${what}; training stopped${this.kept()} (lower --lr, check labels, or pass --on-nan skip)`);
  }

  afterStep(state: LoopState): void {
    // The update is applied already: skipping cannot undo it, so both modes stop here.
    if (state.nonFiniteWeights) throw new UserError(`step ${state.step + 1}: the optimizer step made parameters NaN/Inf; training stopped${this.kept()} (lower --lr${this.o.mode === 'skip' ? '; --on-nan skip cannot undo an applied update' : ''})`);
  }

  /** Finite weights can still overflow in the forward pass; such a model must become neither latest nor best (this callback runs before SaveCheckpoints). */
  afterValidate(state: LoopState): void {
    const loss = state.metrics?.valid_loss;
    if (loss !== undefined && !Number.isFinite(loss)) throw new UserError(`epoch ${state.epoch}: the validation loss is ${loss}: the model's outputs are no longer finite; training stopped${this.kept()} (lower --lr)`);
  }

  private kept(): string {
    const last = this.o.lastCheckpoint();
    return last ? `; the last good checkpoint is ${last}` : ' before the first checkpoint';
  }
}

/**
 * EarlyStoppingCallback: ends the fit, as complete, once the monitored metric has gone `patience`
 * validations without improving by more than `minDelta`. Unlike fastai's, its count spans both
 * phases of fine_tune and survives a resume (it is saved in the checkpoint).
 */
export class EarlyStopping implements Callback, Checkpointed {
  readonly name = 'early-stopping';
  private best?: number;
  private wait = 0;

  constructor(private readonly o: { monitor: Monitor; patience: number; minDelta?: number; resume?: unknown }) {
    const saved = o.resume as { best?: number; wait?: number } | undefined;
    if (saved) [this.best, this.wait] = [saved.best, saved.wait ?? 0];
  }

  afterValidate(state: LoopState): void {
    const value = monitored(state, this.o.monitor);
    const delta = this.o.minDelta ?? 0;
    const shifted = this.o.monitor.direction === 'min' ? value + delta : value - delta;
    if (this.best === undefined || improves(this.o.monitor.direction, shifted, this.best)) {
      this.best = value;
      this.wait = 0;
      return;
    }
    this.wait++;
    if (this.wait >= this.o.patience) state.finishRequested = true;
  }

  checkpointState(): { best?: number; wait: number } {
    return { best: this.best, wait: this.wait };
  }
}

/**
 * How steady the adversarial game is: the validation domain accuracy of every epoch, and its spread
 * (max − min) over the last `last` epochs. A stable game keeps the accuracy near 0.5 with a small
 * spread; swings between 0 and 1 mean the discriminator and the features take turns winning.
 */
export class DomainAccuracySpread implements Callback, Checkpointed {
  readonly name = 'domain-accuracy';
  private readonly values: number[];

  constructor(private readonly o: { last?: number; resume?: unknown } = {}) {
    const saved = o.resume as { values?: number[] } | undefined;
    this.values = [...(saved?.values ?? [])];
  }

  afterValidate(state: LoopState): void {
    const v = state.metrics?.domain_accuracy;
    if (v !== undefined && Number.isFinite(v)) this.values.push(v);
  }

  /** `{ last, values, spread }` over the last epochs, or undefined before any domain accuracy. */
  summary(): { last: number; values: number[]; spread: number } | undefined {
    const tail = this.values.slice(-(this.o.last ?? 3));
    if (tail.length === 0) return undefined;
    return { last: tail.length, values: tail, spread: Math.max(...tail) - Math.min(...tail) };
  }

  checkpointState(): { values: number[] } {
    return { values: this.values };
  }
}
