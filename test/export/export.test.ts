/**
 * The exported inference model: same outputs as the eval model fed the checkpoint and as the seed's
 * PyTorch module with the same weights; a plain graph (BatchNorm folded, ai.onnx ops only, one
 * input); metadata that reads back; loads in onnxruntime-web's wasm backend; `ort-dann export`.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { IMAGENET_NORMALIZATION } from '../../src/data/normalization.ts';
import { EXPORT_IR_VERSION, EXPORT_OPSET, exportInferenceModel } from '../../src/export/export.ts';
import { readInferenceMetadata } from '../../src/export/metadata.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { Graph } from '../../src/onnx/graph.ts';
import { readModelFile, toNumber } from '../../src/onnx/proto.ts';
import { rng } from '../helpers/gradcheck.ts';
import { tempDirs } from '../io/tmp.ts';
import { PY_SAFETENSORS, runPythonFile } from '../io/python.ts';
import { exportFixture, makeFixture, relErr, runCli, runOrt, type Fixture } from './fixture.ts';

const temp = tempDirs('ort-dann-export-');
const N = 4;
const S = 128;
let fx: Fixture;
let dir: string;
let images: Float32Array;

before(async () => {
  dir = temp();
  fx = await makeFixture(join(dir, 'artifacts'));
  const rand = rng(7);
  images = Float32Array.from({ length: N * 3 * S * S }, () => rand());
});

const imageTensor = () => new ort.Tensor('float32', images, [N, 3, S, S]);

test('exported model matches the eval model and PyTorch (float64) to 1e-4', async () => {
  const model = join(dir, 'parity.onnx');
  await exportFixture(fx, model, { withDomain: true });
  const exported = await runOrt(model, { images: imageTensor() });

  const K = fx.manifest.config.outputs.length;
  const feeds: Record<string, ort.Tensor> = {
    images: imageTensor(),
    n_source: new ort.Tensor('int64', BigInt64Array.from([BigInt(N)]), [1]),
    labels: new ort.Tensor('float32', new Float32Array(N * K), [N, K]),
    lambda_domain: new ort.Tensor('float32', new Float32Array(1), []),
  };
  for (const spec of fx.manifest.models.eval.inputs.filter((i) => i.role === 'param' || i.role === 'buffer')) {
    const t = fx.weights.get(spec.name)!;
    feeds[spec.name] = new ort.Tensor('float32', t.data as Float32Array, t.shape);
  }
  const evalOut = await runOrt(join(fx.artifacts, 'eval_model.onnx'), feeds);

  const codec = join(dir, 'codec.py');
  writeFileSync(codec, PY_SAFETENSORS);
  const inputs = join(dir, 'images.safetensors');
  const refFile = join(dir, 'torch.safetensors');
  await writeSafetensors(inputs, { images: { dtype: 'F32', shape: [N, 3, S, S], data: images } });
  runPythonFile(join(import.meta.dirname, '..', '..', 'src', 'export', 'torch_dann.py'), ['forward', fx.artifacts, fx.checkpoint, inputs, refFile, codec]);
  const torch = (await readSafetensors(refFile)).tensors;
  const ref = (name: string) => torch.get(name)!.data as Float32Array;

  const report: string[] = [];
  const check = (what: string, got: Float32Array, want: Float32Array, tol = 1e-4) => {
    const err = relErr(got, want);
    report.push(`${what} ${err.toExponential(1)}`);
    assert.ok(err < tol, `${what}: relative error ${err.toExponential(2)}`);
  };
  for (const name of ['prediction', 'domain_logit']) {
    check(`${name} exported vs eval`, exported[name], evalOut[name]);
    check(`${name} exported vs torch64`, exported[name], ref(name));
    check(`${name} eval vs torch64`, evalOut[name], ref(name));
  }
  check('features exported vs torch64', exported.features, ref('features'));
  // Folding changes float32 rounding only: no further from the exact answer than PyTorch's own float32 run.
  for (const name of ['prediction', 'domain_logit', 'features']) {
    assert.ok(relErr(exported[name], ref(name)) <= Math.max(1e-6, 3 * relErr(ref(`${name}@torch32`), ref(name))), `${name}: further from float64 than PyTorch float32 is`);
  }
  console.log(`# relative errors: ${report.join(', ')}`);
});

test('exported graph: one input, BatchNorm folded, no dropout or GRL, ai.onnx opset 17 / IR 8', async () => {
  for (const withDomain of [false, true]) {
    const file = join(dir, `plain-${withDomain}.onnx`);
    const r = await exportFixture(fx, file, { withDomain });
    const model = readModelFile(file);
    assert.equal(toNumber(model.irVersion), EXPORT_IR_VERSION);
    assert.deepEqual(model.opsetImport?.map((o) => [o.domain ?? '', toNumber(o.version)]), [['', EXPORT_OPSET]]);
    const g = Graph.fromModel(model);
    assert.deepEqual(g.inputs, [{ name: 'images', dtype: 'float', shape: ['N', 3, S, S] }]);
    const F = fx.manifest.config.featureDim;
    const want: [string, (string | number)[]][] = [['prediction', ['N', 3]], ...(withDomain ? [['features', ['N', F]], ['domain_logit', ['N', 1]]] as [string, (string | number)[]][] : [])];
    assert.deepEqual(g.outputs.map((o) => [o.name, o.shape]), want);
    const ops = new Set(g.nodes.map((n) => n.op));
    for (const op of ['BatchNormalization', 'Dropout', 'Identity', 'Softplus', 'Slice']) assert.ok(!ops.has(op), `no ${op} node`);
    assert.deepEqual(g.nodes.filter((n) => n.domain !== '').map((n) => n.op), []);
    assert.equal(r.foldedBatchNorms, fx.manifest.buffers.filter((b) => b.name.endsWith('.running_mean')).length);
    assert.equal(r.ops.Conv, r.foldedBatchNorms, 'every conv carries its BatchNorm');
    assert.ok(![...g.initializers.keys()].some((k) => /running_(mean|var)|\.bn\d\./.test(k)), 'no BatchNorm tensors left');
    // One Flatten feeds both heads.
    assert.equal(r.ops.Flatten, 1);
  }
});

test('metadata reads back as written', async () => {
  const file = join(dir, 'meta.onnx');
  const r = await exportFixture(fx, file, { normalization: IMAGENET_NORMALIZATION, runId: 'run-42', withDomain: true });
  const read = readInferenceMetadata(readModelFile(file), file);
  assert.deepEqual(read, r.metadata);
  assert.equal(read.imageSize, S);
  assert.equal(read.channels, 3);
  assert.deepEqual(read.normalization, IMAGENET_NORMALIZATION);
  assert.deepEqual(read.outputNames, fx.manifest.config.outputs);
  assert.deepEqual(read.outputs, ['prediction', 'features', 'domain_logit']);
  assert.equal(read.task, 'regression');
  assert.equal(read.runId, 'run-42');
  assert.match(read.sourceCommit ?? '', /^[0-9a-f]{40}$/, 'this checkout is a git repository');
  assert.equal(read.ortDannVersion, JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')).version);
  assert.ok(Math.abs(Date.parse(read.created) - Date.now()) < 60_000);
});

test('onnxruntime-web (wasm, under Node) gives the same outputs as onnxruntime-node', async () => {
  const file = join(dir, 'web.onnx');
  await exportFixture(fx, file, { withDomain: true });
  const native = await runOrt(file, { images: imageTensor() });
  ortWeb.env.wasm.numThreads = 1;
  const session = await ortWeb.InferenceSession.create(readFileSync(file), { executionProviders: ['wasm'] });
  const web = await session.run({ images: new ortWeb.Tensor('float32', images, [N, 3, S, S]) });
  await session.release();
  for (const name of ['prediction', 'features', 'domain_logit']) {
    const err = relErr(web[name].data as Float32Array, native[name]);
    assert.ok(err < 1e-5, `${name}: wasm vs native relative error ${err.toExponential(2)}`);
  }
});

test('ort-dann export: run directory, recorded normalization, errors', async () => {
  // A run directory as `ort-dann train` leaves it: manifest copy, best/ and latest/ checkpoints, model.onnx.
  const run = join(dir, 'runs', 'demo');
  for (const sub of ['best', 'latest']) {
    mkdirSync(join(run, sub), { recursive: true });
    copyFileSync(fx.checkpoint, join(run, sub, 'model.safetensors'));
  }
  copyFileSync(join(fx.artifacts, 'manifest.json'), join(run, 'manifest.json'));
  await exportFixture(fx, join(run, 'model.onnx'), { normalization: IMAGENET_NORMALIZATION, runId: 'demo' });
  const out = join(dir, 'from-run.onnx');
  const ok = await runCli(['export', '--checkpoint', run, '--out', out, '--with-domain']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /best\/model\.safetensors/);
  const meta = readInferenceMetadata(readModelFile(out), out);
  assert.deepEqual(meta.normalization, IMAGENET_NORMALIZATION, "taken from the run's model.onnx");
  assert.equal(meta.runId, 'demo');
  assert.deepEqual(meta.outputs, ['prediction', 'features', 'domain_logit']);
  const exported = await runOrt(out, { images: imageTensor() });
  const direct = await runOrt(join(dir, 'parity.onnx'), { images: imageTensor() });
  assert.deepEqual(exported.prediction, direct.prediction, 'same weights, same model');
  // The library takes the run directory as a checkpoint path too.
  const viaPath = join(dir, 'via-path.onnx');
  await exportInferenceModel({ manifest: fx.manifest, checkpoint: run, out: viaPath, metadata: { normalization: IMAGENET_NORMALIZATION } });
  assert.deepEqual((await runOrt(viaPath, { images: imageTensor() })).prediction, direct.prediction);

  const empty = join(dir, 'empty-run');
  mkdirSync(empty);
  const lonely = join(dir, 'lonely');
  mkdirSync(lonely);
  copyFileSync(fx.checkpoint, join(lonely, 'weights.safetensors'));
  const cases: [string[], RegExp][] = [
    [['--checkpoint', join(dir, 'nope')], /--checkpoint .*nope: no such file or folder/],
    [['--checkpoint', empty], /holds none of best\/model\.safetensors/],
    [['--checkpoint', join(lonely, 'weights.safetensors')], /no manifest\.json beside .*pass --artifacts DIR/],
    [['--checkpoint', join(lonely, 'weights.safetensors'), '--artifacts', empty], /--artifacts .*: no manifest\.json there/],
  ];
  const results = await Promise.all(cases.map(([args]) => runCli(['export', ...args])));
  results.forEach((r, k) => {
    assert.notEqual(r.status, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, cases[k][1]);
  });
  // With --artifacts, a checkpoint anywhere works.
  const fromFile = await runCli(['export', '--checkpoint', join(lonely, 'weights.safetensors'), '--artifacts', fx.artifacts, '--normalize', 'imagenet']);
  assert.equal(fromFile.status, 0, fromFile.stderr);
  assert.deepEqual(readInferenceMetadata(readModelFile(join(lonely, 'model.onnx')), 'x').normalization, IMAGENET_NORMALIZATION);
});
