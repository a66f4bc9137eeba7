/**
 * Standardized regression targets end to end: the statistics, the loss of the first training step
 * with and without standardization (against the training graph run directly on the same batch), and
 * the round trip train → export → predict, whose predictions must be the eval graph's standardized
 * outputs mapped back to original units.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateDemoData, openSimulator, openSource, openTarget, readLabelsCsv } from '../../src/data/index.ts';
import { loadImageTensor } from '../../src/data/decode.ts';
import { openInferenceModel, predictFiles } from '../../src/export/runtime.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { combineBatches, dannEvalStep, dannTrainStep } from '../../src/training/dann-step.ts';
import { TrainingSession } from '../../src/training/session.ts';
import { destandardize, fitTargetScaling, parseTargetScaling, standardize, TARGET_SCALING_META, targetScalingOf } from '../../src/training/standardize.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-standardize-'));
const artifacts = join(root, 'artifacts');
let data: Awaited<ReturnType<typeof generateDemoData>>;
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 3 });
  data = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 4, val: 4, sourceVal: 6, seed: 2 });
});

/** One optimizer step (batch 2 per domain) on the labelled demo folder; returns the run's first training row. */
function trainOneStep(runDir: string, extra: string[] = []): Record<string, number> {
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'train', '--artifacts', artifacts, '--source', data.sourceVal!, '--source-val', data.sourceVal!,
    '--target', data.targetTrain, '--target-val', data.targetVal, '--batch-size', '2', '--source-size', '2', '--val-size', '2',
    '--epochs', '1', '--freeze-epochs', '0', '--lr', '1e-3', '--threads', '2', '--wandb', 'disabled', '--run-dir', runDir, ...extra], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').split('\n')[0]);
}

test('statistics: per-output mean and population std, constant outputs keep std 1, transforms invert', () => {
  const labels = Float32Array.from([2, 0.1, 5, 4, 0.3, 5, 6, 0.5, 5]);
  const s = fitTargetScaling(labels, ['a', 'b', 'c']);
  assert.deepEqual(s.mean.map((x) => Number(x.toFixed(6))), [4, 0.3, 5]);
  assert.ok(Math.abs(s.std[0] - Math.sqrt(8 / 3)) < 1e-12);
  assert.ok(Math.abs(s.std[1] - Math.sqrt(0.08 / 3)) < 1e-7);
  assert.equal(s.std[2], 1);
  const z = standardize(labels, s);
  assert.ok(Math.abs(z[0] + 2 / Math.sqrt(8 / 3)) < 1e-6);
  const back = destandardize(z, s);
  labels.forEach((v, i) => assert.ok(Math.abs(back[i] - v) < 1e-6, `${back[i]} vs ${v}`));
  assert.throws(() => parseTargetScaling(JSON.stringify(s), ['a', 'b'], 'x.safetensors'), /x\.safetensors: metadata ort-dann\.target-scaling does not describe the outputs a, b/);
});

test('a simulator source is rewound after its statistics are read, so training still starts at sample 0', async () => {
  const open = () => openSimulator({ kind: 'particles' }, { size: 128, seed: 4, stream: 'source-train', workers: 0 });
  const [a, b] = [await open(), await open()];
  try {
    const s = await targetScalingOf(a, ['num_particles', 'planar_dist', 'depth_dist'], 64);
    assert.ok(s.mean[0] > 10 && s.mean[0] < 22 && s.std[0] > 5, `num_particles is uniform on 2..30: ${JSON.stringify(s)}`);
    assert.equal(a.position, 0);
    assert.deepEqual((await a.nextBatch(3)).labels, (await b.nextBatch(3)).labels);
  } finally {
    await a.close();
    await b.close();
  }
});

test('first step: raw MSE with --no-standardize-targets, MSE of standardized labels by default (training graph run directly)', async () => {
  const raw = trainOneStep(join(root, 'raw'), ['--no-standardize-targets']);
  const std = trainOneStep(join(root, 'std'));
  const table = await readLabelsCsv(join(data.sourceVal!, 'labels.csv'));
  const expected = fitTargetScaling(Float32Array.from(table.rows.flatMap((r) => r.values)), table.outputNames);
  const { metadata } = await readSafetensors(join(root, 'std', 'latest', 'model.safetensors'));
  const recorded = parseTargetScaling(metadata[TARGET_SCALING_META], table.outputNames, 'std');
  recorded.mean.forEach((m, k) => assert.ok(Math.abs(m - expected.mean[k]) < 1e-9 && Math.abs(recorded.std[k] - expected.std[k]) < 1e-9));
  assert.equal((await readSafetensors(join(root, 'raw', 'latest', 'model.safetensors'))).metadata[TARGET_SCALING_META], undefined);

  // The same first batch through a fresh session of the same artifacts and seed (same weights and dropout masks).
  const common = { size: 128, seed: 0 };
  const source = await openSource(data.sourceVal!, { ...common, split: 'train' });
  const target = await openTarget(data.targetTrain, { ...common, split: 'train' });
  source.startEpoch(0);
  target.startEpoch(0);
  const s = await source.nextBatch(2);
  const t = await target.nextBatch(2);
  await source.close();
  await target.close();
  for (const [row, labels] of [[raw, s.labels!], [std, standardize(s.labels!, recorded)]] as const) {
    const session = await TrainingSession.fromArtifacts(artifacts, { threads: 2, seed: 0 });
    try {
      session.freezeTo(0);
      const losses = await dannTrainStep(session, { ...combineBatches(s, t), labels }, { alpha: 0, lambdaDomain: 0.1 });
      assert.equal(Math.fround(row.regression_loss), losses.regressionLoss);
    } finally {
      await session.release();
    }
  }
  assert.ok(raw.regression_loss > 20 * std.regression_loss, `raw MSE ${raw.regression_loss} is dominated by num_particles; standardized ${std.regression_loss}`);
});

test('round trip: train on standardized targets, export, predict gives the eval graph\'s outputs in original units', async () => {
  const runDir = join(root, 'std');
  const outputs = ['num_particles', 'planar_dist', 'depth_dist'];
  const { metadata } = await readSafetensors(join(runDir, 'best', 'model.safetensors'));
  const scaling = parseTargetScaling(metadata[TARGET_SCALING_META], outputs, 'best');
  const files = (await readLabelsCsv(join(data.sourceVal!, 'labels.csv'))).rows.map((r) => join(data.sourceVal!, 'images', r.name));
  const images = new Float32Array(files.length * 3 * 128 * 128);
  for (const [i, f] of files.entries()) images.set(await loadImageTensor(f, 128, { kind: 'none' }), i * 3 * 128 * 128);
  const session = await TrainingSession.fromArtifacts(artifacts, { threads: 2, seed: 0 });
  let want: Float32Array;
  try {
    await session.loadCheckpoint(join(runDir, 'best'));
    // Rows fed as target: the export folds the target-domain BatchNorm statistics by default.
    const r = await dannEvalStep(session, { images, count: files.length, nSource: 0, labels: new Float32Array(0) }, 0);
    want = destandardize(r.prediction, scaling);
  } finally {
    await session.release();
  }
  // Both the model train wrote and one re-exported from the run directory by `ort-dann export`.
  const reexported = join(root, 'reexported.onnx');
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'export', '--checkpoint', runDir, '--out', reexported], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const file of [join(runDir, 'model.onnx'), reexported]) {
    const model = await openInferenceModel(file, { threads: 2 });
    try {
      const got: number[] = [];
      for await (const b of predictFiles(model, files, { batchSize: 4 })) got.push(...b.outputs.prediction!);
      assert.equal(got.length, want.length);
      got.forEach((v, i) => {
        const scale = scaling.std[i % 3];
        assert.ok(Math.abs(v - want[i]) <= 1e-4 * scale + 1e-5 * Math.abs(want[i]), `${file} row ${Math.floor(i / 3)} ${outputs[i % 3]}: ${v} vs ${want[i]}`);
      });
      // Original units: num_particles predictions sit near the label mean (~16), not near 0 as standardized outputs would.
      for (let i = 0; i < got.length; i += 3) assert.ok(Math.abs(got[i] - scaling.mean[0]) < 4 * scaling.std[0], `num_particles ${got[i]}`);
    } finally {
      await model.release();
    }
  }
});
