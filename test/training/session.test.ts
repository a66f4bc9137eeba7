import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { dannTrainStep } from '../../src/training/dann-step.ts';
import { UserError } from '../../src/errors.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import type { Tensor } from '../../src/io/tensor.ts';
import { AdamStepper } from '../../src/training/adam.ts';
import { TrainingSession } from '../../src/training/session.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { randn, rng } from '../helpers/gradcheck.ts';
import { PY_SAFETENSORS, runPythonFile } from '../io/python.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-session-'));
const artifacts = join(root, 'artifacts');
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 1 });
});

function batch(seed: number, ns = 3, nt = 2) {
  const rand = rng(seed);
  const n = ns + nt;
  return { images: Float32Array.from({ length: n * 3 * 128 * 128 }, () => rand()), count: n, nSource: ns, labels: randn(ns * 3, rand) };
}
const step = (s: TrainingSession, b: ReturnType<typeof batch>, dropoutMasks?: Record<string, Float32Array>) => dannTrainStep(s, b, { alpha: 0.5, lambdaDomain: 0.1, dropoutMasks });

test('the JS and ONNX optimizer paths give the same parameters from the same gradients', async () => {
  const js = await TrainingSession.fromArtifacts(artifacts, { optimizer: 'js', threads: 2 });
  const onnx = await TrainingSession.fromArtifacts(artifacts, { optimizer: 'onnx', threads: 2 });
  try {
    js.lazyResetGrad();
    await step(js, batch(0));
    // Same gradients into both: re-running the forward would let 1-ulp differences grow through Adam's
    // normalisation of near-zero gradients, which says nothing about the two update paths.
    onnx.gradients.set(js.gradients);
    js.freezeTo(1);
    onnx.freezeTo(1);
    for (let step = 0; step < 3; step++) {
      for (const s of [js, onnx]) await s.runOptimizerStep(s.hypersFor([1e-4, 2e-4, 1e-3, 1e-3, 3e-3].slice(0, s.groupCount)));
    }
    const a = js.getContiguousParameters();
    const b = onnx.getContiguousParameters();
    let worst = 0;
    for (let k = 0; k < a.length; k++) worst = Math.max(worst, Math.abs(a[k] - b[k]));
    assert.ok(worst < 1e-6, `JS and ONNX optimizer differ by ${worst}`);
  } finally {
    await js.release();
    await onnx.release();
  }
});

test('gradients accumulate until lazyResetGrad, like ORT training', async () => {
  const s = await TrainingSession.fromArtifacts(artifacts, { threads: 2 });
  try {
    const fixed = { label_dropout_mask: new Float32Array(3 * 256).fill(1), domain_dropout_mask: new Float32Array(5 * 256).fill(1) };
    s.lazyResetGrad();
    await step(s, batch(7), fixed);
    const once = Float32Array.from(s.gradients);
    // Running statistics move between the two steps but do not enter a training-mode forward.
    await step(s, batch(7), fixed);
    for (let k = 0; k < once.length; k += 997) assert.ok(Math.abs(s.gradients[k] - 2 * once[k]) <= 1e-5 * (Math.abs(once[k]) + 1e-6));
    s.lazyResetGrad();
    await step(s, batch(7), fixed);
    for (let k = 0; k < once.length; k += 997) assert.equal(s.gradients[k], once[k]);
  } finally {
    await s.release();
  }
});

test('freezing keeps the body fixed except BatchNorm, and a checkpoint round-trips (also into PyTorch, strict)', async () => {
  const s = await TrainingSession.fromArtifacts(artifacts, { threads: 2 });
  try {
    s.freezeTo(1);
    const before = Float32Array.from(s.getContiguousParameters());
    s.lazyResetGrad();
    await step(s, batch(3));
    await s.runOptimizerStep(s.hypersFor(1e-3));
    for (const t of s.tensors) {
      const changed = s.getContiguousParameters().subarray(t.offset, t.offset + t.size).some((v, k) => v !== before[t.offset + k]);
      const spec = s.manifest.parameters.find((p) => p.name === t.name)!;
      const shouldChange = spec.group >= 1 || spec.isBatchNorm;
      assert.equal(changed, shouldChange, `${t.name} ${shouldChange ? 'should' : 'should not'} change while frozen`);
    }
    const dir = join(root, 'ckpt');
    await s.saveCheckpoint(dir, { epoch: 3 });
    const again = await TrainingSession.create({ artifacts, checkpointState: dir }, { threads: 2 });
    try {
      assert.deepEqual(again.getContiguousParameters(), s.getContiguousParameters());
      assert.equal(again.isTrainable('feature_extractor.resnet_layers.0.weight'), false);
      assert.deepEqual(again.counters, s.counters);
      assert.equal([...s.counters.values()][0], 1n);
      assert.equal(again.trainerState?.epoch, 3);
      // The moments and step counts came back too: the same gradients give bit-identical updates.
      again.gradients.set(s.gradients);
      for (const t of [s, again]) await t.runOptimizerStep(t.hypersFor(1e-3));
      assert.ok(Buffer.from(again.getContiguousParameters().buffer).equals(Buffer.from(s.getContiguousParameters().buffer)));
    } finally {
      await again.release();
    }
    const codec = join(root, 'codec.py');
    writeFileSync(codec, PY_SAFETENSORS);
    const script = join(root, 'load.py');
    // The reference module (the seed's, with per-domain BatchNorm when the manifest says so) must take every key.
    writeFileSync(script, `
import json, sys
exec(open(sys.argv[2]).read())
sys.path.insert(0, sys.argv[3])
import seed_dann
state, _, _ = read_st(sys.argv[1])
seed_dann.DANN(json.load(open(sys.argv[4]))['config']).load_state_dict(state, strict=True)
print('ok', int(state['feature_extractor.resnet_layers.1.num_batches_tracked']))
`);
    assert.equal(runPythonFile(script, [join(dir, 'model.safetensors'), codec, join(import.meta.dirname, '..', '..', 'tools', 'reference'), join(artifacts, 'manifest.json')]).trim(), 'ok 1');
  } finally {
    await s.release();
  }
});

test('a start that fails (missing checkpoint or model) says which file, and closes the workers and sessions it opened', async () => {
  const closed: string[] = [];
  const adamClose = AdamStepper.prototype.close;
  const original = ort.InferenceSession.create;
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (file: string, o?: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession>;
  AdamStepper.prototype.close = function (this: AdamStepper) {
    closed.push('adam');
    return adamClose.call(this);
  };
  (ort.InferenceSession as { create: unknown }).create = async (file: string, o?: ort.InferenceSession.SessionOptions) => {
    const session = await create(file, o);
    const release = session.release.bind(session);
    session.release = () => {
      closed.push('session');
      return release();
    };
    return session;
  };
  try {
    await assert.rejects(TrainingSession.create({ artifacts, checkpointState: join(root, 'nowhere.safetensors') }), (e: Error) => e instanceof UserError && /nowhere\.safetensors does not exist/.test(e.message));
    assert.deepEqual(closed.sort(), ['adam', 'session', 'session']);
    closed.length = 0;
    await assert.rejects(TrainingSession.create({ artifacts, trainModel: join(root, 'missing.onnx') }), (e: Error) => e instanceof UserError && /missing\.onnx is missing/.test(e.message));
    assert.deepEqual(closed, ['adam']);
  } finally {
    AdamStepper.prototype.close = adamClose;
    (ort.InferenceSession as { create: unknown }).create = original;
  }
});

test('a damaged optimizer.safetensors is refused in one line, before the session changes', async () => {
  const s = await TrainingSession.fromArtifacts(artifacts, { threads: 2 });
  try {
    s.lazyResetGrad();
    await step(s, batch(5));
    await s.runOptimizerStep(s.hypersFor(1e-3));
    const good = join(root, 'good');
    await s.saveCheckpoint(good, { epoch: 1 });
    const saved = await readSafetensors(join(good, 'optimizer.safetensors'));
    const [first] = s.tensors;
    const variants: [string, (m: Map<string, Tensor>) => void, Record<string, string>, RegExp][] = [
      ['missing', (m) => m.delete(`${first.name}.exp_avg_sq`), saved.metadata, new RegExp(`lacks ${first.name}\\.exp_avg_sq\\)$`)],
      ['short', (m) => m.set(`${first.name}.exp_avg`, { dtype: 'F32', shape: [3], data: new Float32Array(3) }), saved.metadata, new RegExp(`${first.name}\\.exp_avg has 3 values, the model needs ${first.size}\\)$`)],
      ['metadata', () => undefined, { trainer: '{not json' }, /its trainer metadata is not JSON\)$/],
      ['metadata-null', () => undefined, { trainer: 'null' }, /its trainer metadata is not the object ort-dann saves\)$/],
      ['metadata-trainable', () => undefined, { trainer: '{"trainable":5}' }, /its trainer metadata is not the object ort-dann saves\)$/],
    ];
    for (const [name, damage, metadata, message] of variants) {
      const dir = join(root, `bad-${name}`);
      mkdirSync(dir, { recursive: true });
      copyFileSync(join(good, 'model.safetensors'), join(dir, 'model.safetensors'));
      const tensors = new Map(saved.tensors);
      damage(tensors);
      await writeSafetensors(join(dir, 'optimizer.safetensors'), tensors, metadata);
      const expected = (e: Error) => e instanceof UserError && e.message.startsWith(`${join(dir, 'optimizer.safetensors')} belongs to another checkpoint or is damaged`) && message.test(e.message);
      await assert.rejects(TrainingSession.create({ artifacts, checkpointState: dir }, { threads: 2 }), expected);
      const before = Float32Array.from(s.getContiguousParameters());
      const beforeCounters = new Map(s.counters);
      s.getContiguousParameters().fill(0.5);
      const poked = Float32Array.from(s.getContiguousParameters());
      await assert.rejects(s.loadCheckpoint(dir), expected);
      // Neither the weights (model.safetensors was fine) nor the counters were written.
      assert.deepEqual(s.getContiguousParameters(), poked);
      assert.deepEqual(s.counters, beforeCounters);
      s.loadParametersBuffer(before);
    }
  } finally {
    await s.release();
  }
});
