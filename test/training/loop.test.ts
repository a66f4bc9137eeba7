/**
 * The fit loop's events and how it honours what callbacks ask (skip a step, finish, stop), on a
 * scripted session and data (no ONNX Runtime graphs): the loop is events, the policies are callbacks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fit } from '../../src/training/loop.ts';
import { fineTuneDannPlan } from '../../src/training/schedules.ts';
import type { StepFeeds, StepOutputs, TrainingSession } from '../../src/training/session.ts';
import type { BatchSource, Callback, ImageBatch, LoopState } from '../../src/training/types.ts';

const SIZE = 2;

/** A session whose train step returns the scripted losses and whose eval predicts 0. */
function scriptedSession(losses: number[]) {
  const log: string[] = [];
  let k = 0;
  const session = {
    manifest: { config: { imageSize: SIZE, outputs: ['a'], task: 'regression' } },
    gradients: new Float32Array(4),
    freezeTo: (n: number) => log.push(`freezeTo ${n}`),
    resetOptimizerState: () => log.push('reset'),
    lazyResetGrad: () => {},
    parameterViews: () => new Map(),
    gradientViews: () => new Map(),
    runTrainStep: async (feeds: StepFeeds): Promise<StepOutputs> => {
      assert.deepEqual(feeds.image!.dims, [4, 3, SIZE, SIZE], 'two source rows, then two target rows');
      const loss = Float32Array.of(losses[k++]);
      return { loss, regression_loss: loss, domain_loss: Float32Array.of(0) };
    },
    runOptimizerStep: async () => { log.push('optimizer'); },
    runEvalStep: async (feeds: StepFeeds): Promise<StepOutputs> => {
      const rows = feeds.image!.dims[0];
      return { loss: Float32Array.of(1), regression_loss: Float32Array.of(1), domain_loss: Float32Array.of(0), prediction: new Float32Array(rows), domain_logit: new Float32Array(rows) };
    },
  };
  return { session: session as unknown as TrainingSession, log };
}

function source(name: string, labelled: boolean): BatchSource {
  let position = 0;
  return {
    name, labelled, length: undefined,
    startEpoch: () => {},
    nextBatch: async (count: number): Promise<ImageBatch> => {
      position += count;
      return { images: new Float32Array(count * 3 * SIZE * SIZE), count, size: SIZE, ...(labelled ? { labels: new Float32Array(count) } : {}) };
    },
    get position() { return position; },
    close: async () => {},
  };
}

async function run(losses: number[], callbacks: Callback[], interruptAt?: number) {
  const { session, log } = scriptedSession(losses);
  const events: string[] = [];
  const spy: Callback = Object.fromEntries(['beforeFit', 'beforeEpoch', 'afterBackward', 'afterStep', 'afterBatch', 'afterValidate', 'afterEpoch', 'afterCancelFit', 'afterFit']
    .map((e) => [e, (s: LoopState) => { events.push(`${e}@${s.step}`); }])) as unknown as Callback;
  const result = await fit({
    session, source: source('source', true), target: source('target', false), sourceVal: source('sv', true), targetVal: source('tv', false),
    batchSize: 2, valSteps: 1, lambdaDomain: 0.1, plan: fineTuneDannPlan({ epochs: 1, freezeEpochs: 1, nGroups: 1, nIter: 2 }),
    callbacks: [...callbacks, { ...spy, name: 'spy' }], interrupted: () => interruptAt !== undefined && events.includes(`afterBatch@${interruptAt}`),
  });
  return { result, events, log };
}

test('a fit raises its events in order, one fit per fine_tune phase', async () => {
  const { result, events, log } = await run([1, 1, 1, 1], []);
  assert.deepEqual(events, [
    'beforeFit@0', 'beforeEpoch@0', 'afterBackward@0', 'afterStep@0', 'afterBatch@1', 'afterBackward@1', 'afterStep@1', 'afterBatch@2', 'afterValidate@2', 'afterEpoch@2', 'afterFit@2',
    'beforeFit@2', 'beforeEpoch@2', 'afterBackward@2', 'afterStep@2', 'afterBatch@3', 'afterBackward@3', 'afterStep@3', 'afterBatch@4', 'afterValidate@4', 'afterEpoch@4', 'afterFit@4',
  ]);
  assert.deepEqual(log, ['freezeTo 1', 'reset', 'optimizer', 'optimizer', 'freezeTo 0', 'reset', 'optimizer', 'optimizer']);
  assert.equal(result.stoppedEarly, false);
  assert.deepEqual(Object.keys(result.state.metrics!), ['valid_loss', 'rmse_a', 'domain_accuracy', 'dev']);
});

test('a callback skipping a step keeps the optimizer from running for that batch', async () => {
  const skipSecond: Callback = { name: 'skip', afterBackward: (s) => { if (s.step === 1) s.skipStep = true; } };
  const { events, log } = await run([1, NaN, 1, 1], [skipSecond]);
  assert.equal(log.filter((l) => l === 'optimizer').length, 3);
  assert.ok(!events.includes('afterStep@1'));
});

test('finishing early ends the fit after the epoch; a requested stop raises afterCancelFit', async () => {
  const finish: Callback = { name: 'finish', afterValidate: (s) => { s.finishRequested = true; } };
  const finished = await run([1, 1, 1, 1], [finish]);
  assert.equal(finished.result.state.step, 2);
  assert.equal(finished.result.stoppedEarly, false);
  assert.ok(!finished.events.includes('afterCancelFit@2'));

  const stopped = await run([1, 1, 1, 1], [], 3);
  assert.equal(stopped.result.stoppedEarly, true);
  assert.deepEqual(stopped.events.slice(-2), ['afterCancelFit@3', 'afterFit@3']);
});

test('a callback that throws ends the fit, and afterFit sees the error', async () => {
  let seen: unknown;
  const boom: Callback = { name: 'boom', afterBackward: () => { throw new Error('boom'); }, afterFit: (_s, e) => { seen = e; } };
  await assert.rejects(run([1, 1, 1, 1], [boom]), /boom/);
  assert.equal((seen as Error).message, 'boom');
});
