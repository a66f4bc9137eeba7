import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Graph } from '../../src/onnx/graph.ts';
import { encodeModel, readModelFile } from '../../src/onnx/proto.ts';
import { Builder } from '../../src/onnx/builder.ts';
import { runPythonFile } from '../io/python.ts';

const dir = mkdtempSync(join(tmpdir(), 'ort-dann-grad-'));
runPythonFile(join(import.meta.dirname, 'torch_grad.py'), [dir]);

interface Reference {
  loss: number;
  inputs: Record<string, { dims: number[]; dtype: string; data: number[] }>;
  grads: Record<string, number[]>;
}

for (const name of ['cnn', 'mlp']) {
  test(`ort-dann grad on torch-exported ${name} matches PyTorch autograd (rel 1e-4)`, async () => {
    const out = join(dir, `${name}_grad.onnx`);
    execFileSync(process.execPath, ['bin/ort-dann.js', 'grad', '--model', join(dir, `${name}.onnx`), '--loss', 'loss', '--out', out]);
    const graph = Graph.fromModel(readModelFile(out));
    assert.ok(graph.nodes.every((n) => n.domain === '' || n.domain === 'ai.onnx'), 'only ai.onnx ops');
    const ref: Reference = JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
    const feeds: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(ref.inputs)) {
      feeds[k] = v.dtype === 'torch.int64'
        ? new ort.Tensor('int64', BigInt64Array.from(v.data, (x) => BigInt(x)), v.dims)
        : new ort.Tensor('float32', Float32Array.from(v.data), v.dims);
    }
    const session = await ort.InferenceSession.create(out);
    const result = await session.run(feeds);
    assert.ok(Math.abs((result.loss.data as Float32Array)[0] - ref.loss) <= 1e-5 * Math.max(1, Math.abs(ref.loss)));
    assert.deepEqual(Object.keys(ref.grads).filter((p) => !result[`${p}_grad`]), [], 'every parameter has a gradient output');
    assert.deepEqual(Object.keys(result).filter((o) => o.endsWith('_grad') && !(o.slice(0, -'_grad'.length) in ref.grads)), [], 'no gradient for a buffer');
    for (const [param, expected] of Object.entries(ref.grads)) {
      const got = result[`${param}_grad`].data as Float32Array;
      assert.equal(got.length, expected.length, param);
      const scale = Math.max(...expected.map(Math.abs));
      let worst = 0;
      for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k] - expected[k]));
      assert.ok(worst <= 1e-4 * scale + 1e-7, `${param}: max abs diff ${worst} vs max |grad| ${scale}`);
    }
    await session.release();
  });
}

test('grad rejects a non-scalar loss and an op without a rule, by name, in one line', () => {
  const run = (args: string[]) => {
    try {
      execFileSync(process.execPath, ['bin/ort-dann.js', 'grad', ...args], { stdio: 'pipe' });
      return '';
    } catch (e) {
      return String((e as { stderr: Buffer }).stderr);
    }
  };
  const cnn = join(dir, 'cnn.onnx');
  const missing = run(['--model', cnn, '--loss', 'nope', '--out', join(dir, 'x.onnx')]);
  assert.match(missing, /^ort-dann: --loss nope: .* has no value of that name/);
  const nonScalar = run(['--model', cnn, '--loss', 'x', '--out', join(dir, 'x.onnx')]);
  assert.match(nonScalar, /x has shape \[N,3,32,32\]; it must be a scalar/);
  assert.equal(nonScalar.trim().split('\n').length, 1);

  const g = new Graph();
  const b = new Builder(g);
  g.inputs.push({ name: 'x', dtype: 'float', shape: [2, 3] });
  g.initializers.set('w', { dtype: 'float', dims: [3], data: new Float32Array([1, 2, 3]) });
  const loss = b.op('ReduceSum', [b.op('Elu', [b.op('Mul', ['x', 'w'])], {}, 'elu_out')], { keepdims: 0 }, 'loss');
  g.outputs.push({ name: loss, dtype: 'float' });
  const eluModel = join(dir, 'elu.onnx');
  writeFileSync(eluModel, encodeModel(g.toModel()));
  const noRule = run(['--model', eluModel, '--loss', 'loss', '--out', join(dir, 'x.onnx')]);
  assert.match(noRule, /^ort-dann: node \S+ uses op Elu, which ort-dann cannot differentiate; use LeakyRelu or SiLU \(Sigmoid and Mul\)$/m);
  assert.equal(noRule.trim().split('\n').length, 1);
  assert.doesNotMatch(noRule, /\n\s+at /);
});
