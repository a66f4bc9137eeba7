/**
 * The contracts between the training loop and what plugs into it (data sources, trackers).
 * The loop imports neither sharp nor W&B: src/data implements BatchSource, src/tracking implements Callback.
 * Callbacks of the loop's own policies (checkpoints, NaN, early stopping) live in callbacks.ts.
 */

/** A batch of images as one float32 NCHW tensor, 3 channels, values already preprocessed. */
export interface ImageBatch {
  /** [count, 3, size, size], row-major. */
  images: Float32Array;
  count: number;
  size: number;
  /** [count, K] targets for labelled sources (regression values, or class indices as floats). */
  labels?: Float32Array;
  /** Where each row came from (file path or `sim:<index>`), for error messages and predictions. */
  ids?: string[];
}

/**
 * A domain's stream of batches. Finite sources (folders) reshuffle at every epoch and cycle,
 * infinite ones (simulators) report `length: undefined`.
 */
export interface BatchSource {
  readonly name: string;
  readonly labelled: boolean;
  /** Samples in one pass, or undefined for an endless simulator. */
  readonly length: number | undefined;
  /** Output names of the labels, in column order (labelled sources only). */
  readonly outputNames?: string[];
  /** Starts a new epoch: reshuffles with the seeded stream of that epoch. */
  startEpoch(epoch: number): void;
  /** The next `count` samples; sources prefetch so this rarely waits. */
  nextBatch(count: number): Promise<ImageBatch>;
  /** Samples served so far in the current pass or stream (saved in checkpoints). */
  readonly position?: number;
  /** Continues from a saved position, so a resumed run sees the same samples. */
  seek?(position: number): void;
  close(): Promise<void>;
}

/** Hyper-parameters of one optimizer parameter group at the current step. */
export interface GroupHyper {
  lr: number;
  mom: number;
  sqrMom: number;
  wd: number;
  eps: number;
}

/** What a callback may read at each event; fields are filled as the step progresses. */
export interface LoopState {
  epoch: number;
  /** Fractional epoch, as fastai's Recorder logs it. */
  epochFloat: number;
  /** Completed optimizer steps since the run started (monotonic, resumes continue it). */
  step: number;
  totalSteps: number;
  /** Fraction of all planned training iterations done (drives alpha). */
  progress: number;
  alpha: number;
  lambdaDomain: number;
  hypers: GroupHyper[];
  /** Last step's losses. */
  loss?: number;
  regressionLoss?: number;
  domainLoss?: number;
  /** fastai's exponentially smoothed train loss (beta 0.98, debiased). */
  smoothLoss?: number;
  /** Validation metrics of the last validation, by name (valid_loss, rmse_<output>, domain_accuracy, …). */
  metrics?: Record<string, number>;
  /** Wall-clock seconds since fit started. */
  elapsed: number;
  /** Set by a callback to end training cleanly after the current step, resumable later (W&B's Stop button, Ctrl-C). */
  stopRequested?: boolean;
  /** Set by a callback to end the fit as complete after this epoch (early stopping). */
  finishRequested?: boolean;
  /** Set in afterBackward by a callback to skip this batch's optimizer step (fastai's CancelStepException). */
  skipStep?: boolean;
  /** After the optimizer step: true when it left a weight NaN/Inf (reported by the optimizer). */
  nonFiniteWeights?: boolean;
  /** Samples served so far by each training source, for checkpoints (see BatchSource.position). */
  sourcePositions?: () => Record<string, number>;
  /** Named float32 parameter and gradient views, for histograms; filled only when a callback asks. */
  parameters?: () => Map<string, Float32Array>;
  gradients?: () => Map<string, Float32Array>;
}

/**
 * fastai-shaped callback: every hook is optional and may be async; a hook that throws ends the fit
 * (afterFit still runs, with the error). Per batch the events are beforeBatch, afterBackward (loss and
 * gradients ready, before the optimizer), afterStep (after the optimizer), afterBatch; per epoch
 * beforeEpoch, afterValidate, afterEpoch. Each phase of fine_tune is a fit of its own (beforeFit …
 * afterFit); afterCancelFit runs when a stop was requested, before the last afterFit.
 */
export interface Callback {
  readonly name: string;
  /** Ask the loop for parameter/gradient views every N steps (0 = never). */
  readonly wantsTensorsEvery?: number;
  beforeFit?(state: LoopState): void | Promise<void>;
  beforeEpoch?(state: LoopState): void | Promise<void>;
  beforeBatch?(state: LoopState): void | Promise<void>;
  afterBackward?(state: LoopState): void | Promise<void>;
  afterStep?(state: LoopState): void | Promise<void>;
  afterBatch?(state: LoopState): void | Promise<void>;
  afterValidate?(state: LoopState): void | Promise<void>;
  afterEpoch?(state: LoopState): void | Promise<void>;
  afterCancelFit?(state: LoopState): void | Promise<void>;
  /** `error` is set when the fit ended by an exception. */
  afterFit?(state: LoopState, error?: unknown): void | Promise<void>;
}
