/**
 * `build-artifacts --weights FILE`: a torchvision ResNet state dict saved by torch.save (.pth) and as
 * .safetensors both land in the checkpoint under the seed's names, and the eval model then gives the
 * outputs PyTorch gives with those weights.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { dannEvalStep } from '../../src/training/dann-step.ts';
import { TrainingSession } from '../../src/training/session.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { relErr } from '../export/fixture.ts';
import { rng } from '../helpers/gradcheck.ts';
import { PY_SAFETENSORS, runPythonFile } from '../io/python.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-weights-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('a torch-saved ResNet34 (.pth and .safetensors) gives the same eval outputs in ORT and PyTorch', async () => {
  const codec = join(root, 'codec.py');
  writeFileSync(codec, PY_SAFETENSORS);
  const script = join(import.meta.dirname, 'weights_reference.py');
  runPythonFile(script, ['save', 'resnet34', root, codec]);
  const rand = rng(9);
  const images = Float32Array.from({ length: 3 * 3 * 128 * 128 }, () => rand());
  const imagesFile = join(root, 'images.safetensors');
  await writeSafetensors(imagesFile, { images: { dtype: 'F32', shape: [3, 3, 128, 128], data: images } });
  const results: Float32Array[] = [];
  for (const file of ['resnet.pth', 'resnet.safetensors']) {
    const out = join(root, file.replace('.', '-'));
    const manifest = await buildArtifacts({ config: makeConfig({ imageSize: 128 }), out, weights: join(root, file), weightsCache: root, seed: 1 });
    assert.equal(manifest.weights, join(root, file));
    const session = await TrainingSession.fromArtifacts(out, { threads: 2 });
    try {
      const r = await dannEvalStep(session, { images, count: 3, nSource: 0, labels: new Float32Array(0) }, 0);
      const refFile = join(root, `${file}.ref.safetensors`);
      runPythonFile(script, ['eval', out, join(out, 'checkpoint.safetensors'), join(root, 'resnet.pth'), imagesFile, refFile, codec]);
      const ref = (await readSafetensors(refFile)).tensors;
      assert.ok(relErr(r.prediction, ref.get('prediction')!.data as Float32Array) < 1e-4, `${file}: predictions differ from PyTorch`);
      assert.ok(relErr(r.domainLogit, ref.get('domain_logit')!.data as Float32Array) < 1e-4, `${file}: domain logits differ from PyTorch`);
      results.push(Float32Array.from(r.prediction));
    } finally {
      await session.release();
    }
  }
  assert.deepEqual(results[0], results[1], '.pth and .safetensors of the same weights give the same model');
});
