/**
 * Per-domain BatchNorm statistics (docs/domain-batchnorm.md) through a training step, evaluation and
 * export: a source-only step keeps the target statistics equal to the source ones; a DANN step moves
 * them apart; the exported model reproduces the eval graph on target rows with the target statistics
 * (the default) and on source rows with `deployDomain: 'source'`.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { exportInferenceModel } from '../../src/export/export.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { dannEvalStep, dannTrainStep } from '../../src/training/dann-step.ts';
import { TrainingSession } from '../../src/training/session.ts';
import { rng } from '../helpers/gradcheck.ts';
import { tempDirs } from '../io/tmp.ts';
import { relErr } from './fixture.ts';

const temp = tempDirs('ort-dann-deploy-domain-');
const S = 97;

test('per-domain statistics: source-only keeps them equal, DANN separates them, export keeps the domain asked for', async () => {
  const dir = temp();
  const manifest = await buildArtifacts({ config: makeConfig({ imageSize: S, backbone: 'resnet18' }), out: join(dir, 'artifacts'), weights: 'none', weightsCache: dir, seed: 2 });
  assert.equal(manifest.config.batchNormStats, 'per-domain');
  const session = await TrainingSession.fromArtifacts(join(dir, 'artifacts'), { threads: 1 });
  try {
    const rand = rng(11);
    // Target images brighter and stretched, so their batch statistics differ from the source's.
    const images = (n: number, target: boolean) => Float32Array.from({ length: n * 3 * S * S }, () => (target ? 0.5 + 2 * rand() : rand()));
    const labels = (n: number) => Float32Array.from({ length: n * 3 }, () => rand());
    const stem = 'feature_extractor.resnet_layers.1';
    const stats = (prefix: string) => [...session.buffers.get(`${stem}.${prefix}running_mean`)!, ...session.buffers.get(`${stem}.${prefix}running_var`)!];

    const sourceOnly = await dannTrainStep(session, { images: images(4, false), count: 4, nSource: 4, labels: labels(4) }, { alpha: 0, lambdaDomain: 0 });
    assert.ok(Number.isFinite(sourceOnly.loss));
    assert.ok(session.gradients.every(Number.isFinite), 'a batch without target rows has finite gradients');
    assert.deepEqual(stats('target_'), stats(''), 'a batch without target rows gives the target statistics the source update');

    const both = { images: Float32Array.from([...images(2, false), ...images(2, true)]), count: 4, nSource: 2, labels: labels(2) };
    await dannTrainStep(session, both, { alpha: 0.5, lambdaDomain: 1 });
    const [source, target] = [stats(''), stats('target_')];
    assert.ok(relErr(target, source) > 0.05, `a batch with target rows moves the target statistics their own way (relative difference ${relErr(target, source)})`);

    const evaluated = await dannEvalStep(session, both, 1);
    const K = 3;
    for (const [domain, rows] of [['target', [2, 4]], ['source', [0, 2]]] as const) {
      const out = join(dir, `${domain}.onnx`);
      await exportInferenceModel({ manifest: session.manifest, checkpoint: session.stateDict(), out, metadata: { normalization: { kind: 'none' } }, deployDomain: domain });
      const model = await ort.InferenceSession.create(out);
      const part = both.images.subarray(rows[0] * 3 * S * S, rows[1] * 3 * S * S);
      const got = (await model.run({ images: new ort.Tensor('float32', part, [2, 3, S, S]) })).prediction.data as Float32Array;
      await model.release();
      const want = evaluated.prediction.subarray(rows[0] * K, rows[1] * K);
      assert.ok(relErr(got, want) < 1e-4, `${domain} export vs eval graph on ${domain} rows: ${relErr(got, want)}`);
    }
  } finally {
    await session.release();
  }
});
