/**
 * The training-loop side of W&B: fastai's WandbCallback(log="all") plus the seed's DANN logging, as a
 * loop Callback. Every hook only builds a row and hands it to the run, which never waits on the network.
 */
import type { LoopState } from '../../training/types.ts';
import { epochEndValues, tensorHistograms, trainStepValues, validationValues } from '../history.ts';
import type { Tracker } from '../tracker.ts';
import type { TrackedRun } from './run.ts';

/** wandb.watch's default log_freq. */
export const DEFAULT_HISTOGRAM_EVERY = 1000;

export class WandbCallback implements Tracker {
  readonly name = 'wandb';
  readonly wantsTensorsEvery: number;

  constructor(private readonly run: TrackedRun, histogramEvery = DEFAULT_HISTOGRAM_EVERY) {
    this.wantsTensorsEvery = histogramEvery;
  }

  afterBatch(s: LoopState): void {
    const values = trainStepValues(s);
    if (this.wantsTensorsEvery > 0 && s.step % this.wantsTensorsEvery === 0) {
      try {
        Object.assign(values, tensorHistograms(s));
      } catch (e) {
        this.run.logFailed(e);
      }
    }
    this.run.log(values, s.step);
    this.honourStop(s);
  }

  afterValidate(s: LoopState): void {
    this.run.log(validationValues(s), s.step);
    this.honourStop(s);
  }

  afterEpoch(s: LoopState): void {
    this.run.log(epochEndValues(s), s.step);
    this.honourStop(s);
  }

  afterFit(): void {
    this.run.flushHistory();
  }

  finish(exitCode: number, modelPath?: string): Promise<void> {
    return this.run.finish(exitCode, modelPath);
  }

  /** W&B's Stop button: the loop ends cleanly after the current step. */
  private honourStop(s: LoopState): void {
    if (this.run.stopRequested) s.stopRequested = true;
  }
}
