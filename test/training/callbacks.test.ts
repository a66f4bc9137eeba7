import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../../src/errors.ts';
import { DomainAccuracySpread, EarlyStopping, NanPolicy, SaveCheckpoints } from '../../src/training/callbacks.ts';
import type { TrainingSession } from '../../src/training/session.ts';
import type { LoopState } from '../../src/training/types.ts';

const state = (o: Partial<LoopState> = {}): LoopState => ({
  epoch: 0, epochFloat: 0, step: 0, totalSteps: 10, progress: 0, alpha: 0, lambdaDomain: 0, hypers: [], elapsed: 0, ...o,
});

/** Records the checkpoints a callback writes instead of writing them. */
function recordingSession() {
  const saved: { dir: string; trainer: Record<string, unknown> }[] = [];
  const session = { saveCheckpoint: async (dir: string, trainer: Record<string, unknown> = {}) => { saved.push({ dir, trainer }); } } as unknown as TrainingSession;
  return { session, saved };
}

test('SaveCheckpoints writes best on improvement in the monitor\'s direction and latest every validation', async () => {
  const { session, saved } = recordingSession();
  const cb = new SaveCheckpoints({ session, runDir: '/run', monitor: { name: 'domain_accuracy', direction: 'max' } });
  assert.equal(cb.lastCheckpoint, undefined);
  for (const [epoch, value] of [[0, 0.6], [1, 0.5], [2, 0.7], [3, NaN]] as const) {
    await cb.afterValidate(state({ epoch, step: (epoch + 1) * 4, metrics: { domain_accuracy: value }, sourcePositions: () => ({ source: epoch }) }));
  }
  assert.deepEqual(saved.map((s) => s.dir), ['/run/best', '/run/latest', '/run/latest', '/run/best', '/run/latest', '/run/latest']);
  assert.deepEqual(cb.best, { value: 0.7, epoch: 2 });
  assert.deepEqual(saved.at(-1)!.trainer, { step: 16, best: 0.7, bestEpoch: 2, sources: { source: 3 } });
  assert.equal(cb.lastCheckpoint, '/run/latest');
});

test('SaveCheckpoints continues a resumed best, and a requested stop saves latest only when this step is unsaved', async () => {
  const { session, saved } = recordingSession();
  const cb = new SaveCheckpoints({ session, runDir: '/run', monitor: { name: 'valid_loss', direction: 'min' }, resume: { step: 8, best: 0.5, bestEpoch: 1, sources: {} } });
  assert.equal(cb.lastCheckpoint, '/run/latest', 'a resumed run has its latest checkpoint already');
  await cb.afterValidate(state({ step: 12, metrics: { valid_loss: 0.6 } }));
  await cb.afterCancelFit(state({ step: 12 }));
  assert.deepEqual(saved.map((s) => s.dir), ['/run/latest']);
  await cb.afterCancelFit(state({ step: 13 }));
  assert.deepEqual(saved.map((s) => `${s.dir}@${s.trainer.step}`), ['/run/latest@12', '/run/latest@13']);
});

test('an unknown monitor names the metrics there are', async () => {
  const { session } = recordingSession();
  const cb = new SaveCheckpoints({ session, runDir: '/run', monitor: { name: 'nope', direction: 'min' } });
  await assert.rejects(cb.afterValidate(state({ metrics: { valid_loss: 1, rmse_a: 2 } })), (e: Error) => e instanceof UserError && e.message === '--monitor nope: no such metric; choose one of valid_loss, rmse_a');
});

test('the NaN policy stops (naming the checkpoint kept) or skips the batch; a NaN weight always stops', () => {
  const gradients = new Float32Array([1, 2, 3]);
  let last: string | undefined;
  const stop = new NanPolicy({ mode: 'stop', gradients: () => gradients, lastCheckpoint: () => last });
  stop.afterBackward(state({ loss: 1 }));
  assert.throws(() => stop.afterBackward(state({ step: 0, loss: Infinity })), { message: 'step 1: the loss is Infinity; training stopped before the first checkpoint (lower --lr, check labels, or pass --on-nan skip)' });
  last = '/run/latest';
  gradients[1] = NaN;
  assert.throws(() => stop.afterBackward(state({ step: 6, loss: 0.5 })), { message: 'step 7: a gradient is NaN/Inf (the loss is 0.5); training stopped; the last good checkpoint is /run/latest (lower --lr, check labels, or pass --on-nan skip)' });

  const warnings: string[] = [];
  const skip = new NanPolicy({ mode: 'skip', gradients: () => gradients, lastCheckpoint: () => last, warn: (l) => warnings.push(l) });
  const s = state({ step: 2, loss: 1 });
  skip.afterBackward(s);
  assert.equal(s.skipStep, true);
  assert.equal(skip.skipped, 1);
  assert.deepEqual(warnings, ['ort-dann: warning: step 3: the loss or a gradient is NaN/Inf; batch skipped (1 so far)']);
  skip.afterStep(state({ nonFiniteWeights: false }));
  assert.throws(() => skip.afterStep(state({ step: 4, nonFiniteWeights: true })), (e: Error) => e instanceof UserError && /^step 5: the optimizer step made parameters NaN\/Inf; training stopped; the last good checkpoint is \/run\/latest \(lower --lr; --on-nan skip cannot undo an applied update\)$/.test(e.message));
});

test('early stopping waits `patience` validations without an improvement beyond minDelta, and resumes its count', () => {
  const es = new EarlyStopping({ monitor: { name: 'valid_loss', direction: 'min' }, patience: 2, minDelta: 0.1 });
  const run = (values: number[], cb = es) => values.map((v) => {
    const s = state({ metrics: { valid_loss: v } });
    cb.afterValidate(s);
    return s.finishRequested === true;
  });
  // 0.95 is no improvement on 1 by more than 0.1; 0.8 is.
  assert.deepEqual(run([1, 0.95, 0.8, 0.75]), [false, false, false, false]);
  const resumed = new EarlyStopping({ monitor: { name: 'valid_loss', direction: 'min' }, patience: 2, minDelta: 0.1, resume: es.checkpointState() });
  assert.deepEqual(resumed.checkpointState(), { best: 0.8, wait: 1 });
  assert.deepEqual(run([0.79], resumed), [true]);
  const up = new EarlyStopping({ monitor: { name: 'acc', direction: 'max' }, patience: 1 });
  const s = state({ metrics: { acc: 0.5 } });
  up.afterValidate(s);
  up.afterValidate(Object.assign(s, { metrics: { acc: 0.6 } }));
  assert.equal(s.finishRequested, undefined);
  up.afterValidate(Object.assign(s, { metrics: { acc: 0.6 } }));
  assert.equal(s.finishRequested, true);
});

test('the domain accuracy spread covers the last epochs, survives a resume and ignores runs without a target', () => {
  const spread = new DomainAccuracySpread();
  assert.equal(spread.summary(), undefined);
  for (const v of [0.0, 0.73, 0.04]) spread.afterValidate(state({ metrics: { domain_accuracy: v } }));
  const resumed = new DomainAccuracySpread({ resume: spread.checkpointState() });
  for (const v of [0.57, 0.51]) resumed.afterValidate(state({ metrics: { domain_accuracy: v } }));
  resumed.afterValidate(state({ metrics: { valid_loss: 1 } }));
  const s = resumed.summary()!;
  assert.deepEqual(s.values, [0.04, 0.57, 0.51]);
  assert.equal(s.last, 3);
  assert.ok(Math.abs(s.spread - 0.53) < 1e-12);
});
