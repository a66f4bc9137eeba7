import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Accuracy, CrossEntropy, DomainAccuracy, improves, Mae, Rmse, WeightedMean } from '../../src/metrics.ts';
import { DannValidation } from '../../src/training/validate.ts';

test('RMSE and MAE of one column, over batches as over one', () => {
  // Two outputs; column 1 errors are 1, -2, 3.
  const prediction = [0, 2, 0, -1, 0, 6];
  const truth = [9, 1, 9, 1, 9, 3];
  const rmse = new Rmse('rmse_b', 1, { width: 2 });
  const mae = new Mae('mae_b', 1, { width: 2 });
  for (const m of [rmse, mae]) m.accumulate({ rows: 3, prediction, truth });
  assert.equal(rmse.value(), Math.sqrt((1 + 4 + 9) / 3));
  assert.equal(mae.value(), 2);
  rmse.reset();
  rmse.accumulate({ rows: 1, prediction: prediction.slice(0, 2), truth: truth.slice(0, 2) });
  rmse.accumulate({ rows: 2, prediction: prediction.slice(2), truth: truth.slice(2) });
  assert.equal(rmse.value(), Math.sqrt((1 + 4 + 9) / 3));
  assert.equal(new Rmse('x', 0, { width: 1 }).value(), 0, 'nothing accumulated gives 0, not NaN');
  assert.equal(rmse.direction, 'min');
  assert.equal(Rmse.direction, 'min');
});

test('accuracy takes the first highest score, with class indices one or K columns wide', () => {
  const prediction = [0.2, 0.7, 0.1, 0.5, 0.5, 0, 0.1, 0.1, 0.8];
  const narrow = new Accuracy('accuracy', { width: 3, truthWidth: 1 });
  narrow.accumulate({ rows: 3, prediction, truth: [1, 0, 1] });
  assert.equal(narrow.value(), 2 / 3, 'a tie picks the first class');
  const wide = new Accuracy('accuracy', { width: 3 });
  wide.accumulate({ rows: 3, prediction, truth: [1, 0, 0, 1, 0, 0, 2, 0, 0] });
  assert.equal(wide.value(), 2 / 3);
  assert.equal(wide.direction, 'max');
});

test('cross-entropy is the mean negative log-probability of the true class, finite on a certain miss', () => {
  const ce = new CrossEntropy('cross_entropy', { width: 2, truthWidth: 1 });
  ce.accumulate({ rows: 2, prediction: [0.25, 0.75, 1, 0], truth: [1, 1] });
  assert.equal(ce.value(), (-Math.log(0.75) - Math.log(1e-300)) / 2);
  assert.ok(Number.isFinite(ce.value()));
});

test('domain accuracy counts source rows with logit ≤ 0 and target rows with logit > 0', () => {
  const d = new DomainAccuracy();
  d.accumulate({ logits: [-1, 2, 0, 3, -4], count: 5, nSource: 3 });
  assert.equal(d.value(), 3 / 5);
});

test('a weighted mean weighs each batch mean by its rows', () => {
  const m = new WeightedMean('valid_loss');
  m.accumulate({ value: 2, weight: 3 });
  m.accumulate({ value: 4, weight: 1 });
  assert.equal(m.value(), 2.5);
});

test('improves honours the direction and ignores ties', () => {
  assert.ok(improves('min', 1, 2));
  assert.ok(!improves('min', 2, 2));
  assert.ok(improves('max', 3, 2));
  assert.ok(!improves('max', 1, 2));
});

test("validation reports the seed's metric names in order, each with its direction", () => {
  const regression = new DannValidation({ task: 'regression', outputNames: ['a', 'b'], target: true, targetLabelled: true });
  assert.deepEqual(regression.metrics.map((m) => `${m.name}:${m.direction}`), [
    'valid_loss:min', 'rmse_a:min', 'rmse_b:min', 'domain_accuracy:max',
    'target_rmse_a:min', 'target_mae_a:min', 'target_rmse_b:min', 'target_mae_b:min',
  ]);
  const classification = new DannValidation({ task: 'classification', outputNames: ['x', 'y'], target: true, targetLabelled: true });
  assert.deepEqual(classification.metrics.map((m) => `${m.name}:${m.direction}`), ['valid_loss:min', 'accuracy:max', 'domain_accuracy:max', 'target_accuracy:max']);
  const sourceOnly = new DannValidation({ task: 'regression', outputNames: ['a'], target: false, targetLabelled: false });
  assert.deepEqual(sourceOnly.metrics.map((m) => m.name), ['valid_loss', 'rmse_a']);
  assert.equal(sourceOnly.find('target_rmse_a'), undefined);
});
