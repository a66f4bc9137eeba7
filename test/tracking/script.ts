/** A scripted training loop for tracking tests: drives callbacks the way the real loop does, with a fake clock. */
import type { Callback, LoopState } from '../../src/training/types.ts';
import type { Timing } from '../../src/tracking/index.ts';

/** Time moves only when the script says so, so two runs of the same script log identical rows. */
export class ManualClock {
  constructor(public t = Date.UTC(2026, 0, 2, 3, 4, 5)) {}
  now(): number {
    return this.t;
  }
}

/** Millisecond-scale timing so fault tests finish quickly. */
export const FAST: Partial<Timing> = {
  transmitMs: () => 10,
  heartbeatMs: 150,
  graphqlTimeoutMs: 400,
  fileStreamTimeoutMs: 400,
  uploadTimeoutMs: 2000,
  backoff: { baseMs: 5, maxMs: 40 },
  startAttempts: 3,
  uploadAttempts: 6,
  finishTimeoutMs: 15_000,
  statsIntervalMs: 40,
  summaryWriteMs: 0,
};

export interface Script {
  epochs: number;
  batches: number;
  groups?: number;
  /** Steps whose raw loss is NaN / Infinity. */
  nanAt?: number;
  infAt?: number;
  /** Called after each step (e.g. to inject a fault mid-run). */
  onStep?(step: number, state: LoopState): void | Promise<void>;
}

export const OUTPUTS = ['num_particles', 'planer_dist', 'depth_dist'];

/** Runs the script through the callbacks; returns the final state and the number of steps taken. */
export async function runScript(callbacks: Callback[], clock: ManualClock, script: Script): Promise<{ state: LoopState; steps: number }> {
  const groups = script.groups ?? 2;
  const total = script.epochs * script.batches;
  const params = new Map([['fc1.weight', Float32Array.from({ length: 100 }, (_, i) => Math.sin(i))], ['fc1.bias', new Float32Array([0.5, 0.5])]]);
  const state: LoopState = {
    epoch: 0, epochFloat: 0, step: 0, totalSteps: total, progress: 0, alpha: 0, lambdaDomain: 1, elapsed: 0,
    hypers: Array.from({ length: groups }, (_, g) => ({ lr: 1e-3 * (g + 1), mom: 0.95, sqrMom: 0.99, wd: 0.01, eps: 1e-5 })),
    parameters: () => params,
    gradients: () => new Map([['fc1.weight', Float32Array.from({ length: 100 }, (_, i) => Math.cos(i) * 1e-3)]]),
  };
  const each = async (hook: keyof Callback) => {
    for (const cb of callbacks) await (cb[hook] as ((s: LoopState) => unknown) | undefined)?.call(cb, state);
  };
  await each('beforeFit');
  for (let e = 0; e < script.epochs && !state.stopRequested; e++) {
    state.epoch = e;
    await each('beforeEpoch');
    for (let b = 0; b < script.batches && !state.stopRequested; b++) {
      await each('beforeBatch');
      state.step++;
      clock.t += 1000;
      state.progress = state.step / total;
      state.epochFloat = e + (b + 1) / script.batches;
      state.alpha = 2 / (1 + Math.exp(-10 * state.progress)) - 1;
      state.regressionLoss = 1 / state.step;
      state.domainLoss = 0.69 + 0.01 * Math.sin(state.step);
      state.loss = state.step === script.nanAt ? NaN : state.step === script.infAt ? Infinity : state.regressionLoss + state.domainLoss;
      state.smoothLoss = 0.98 * (state.smoothLoss ?? state.loss) + 0.02 * state.loss;
      state.elapsed = state.step;
      await each('afterBatch');
      await script.onStep?.(state.step, state);
    }
    state.metrics = { valid_loss: 1 / (e + 1), domain_accuracy: 0.5 + 0.1 / (e + 1) };
    for (const [i, o] of OUTPUTS.entries()) state.metrics[`rmse_${o}`] = (i + 1) / (e + 1);
    await each('afterValidate');
    await each('afterEpoch');
  }
  await each('afterFit');
  return { state, steps: state.step };
}
