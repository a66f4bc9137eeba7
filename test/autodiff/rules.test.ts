import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { chooseConvRecipes, type ConvGeometry, convRecipePolicy, GATHERED_IM2COL_LIMIT } from '../../src/autodiff/conv.ts';
import { gradientRules } from '../../src/autodiff/rules.ts';
import * as ort from 'onnxruntime-node';
import { differentiate } from '../../src/autodiff/grad.ts';
import { Builder } from '../../src/onnx/builder.ts';
import { Graph } from '../../src/onnx/graph.ts';
import { encodeModel } from '../../src/onnx/proto.ts';
import { type GradCase, checkGradients, randn, rng } from '../helpers/gradcheck.ts';

type Case = GradCase & { rule: string; name: string };

const positive = (n: number, seed: number) => randn(n, rng(seed)).map((v) => Math.abs(v) + 0.5);
/** Normal values scaled by `scale`, each kept at least 0.05 from every kink, so a finite difference never straddles one. */
const awayFrom = (kinks: number[], n: number, seed: number, scale: number) => randn(n, rng(seed)).map((v) => {
  let x = v * scale;
  for (const k of kinks) if (Math.abs(x - k) < 0.05) x = k + (x < k ? -0.05 : 0.05);
  return x;
});
const conv = (x: number[], w: number[], attrs: Record<string, number[] | number>, withBias = true): Case => ({
  rule: 'Conv', name: `Conv x${x} w${w} ${JSON.stringify(attrs)}${withBias ? ' +bias' : ''}`,
  inputs: withBias ? { X: x, W: w, B: [w[0]] } : { X: x, W: w },
  build: (b) => b.op('Conv', withBias ? ['X', 'W', 'B'] : ['X', 'W'], attrs),
});

const cases: Case[] = [
  { rule: 'Identity', name: 'Identity', inputs: { X: [2, 3] }, build: (b) => b.op('Identity', ['X']) },
  { rule: 'Relu', name: 'Relu', inputs: { X: [3, 4] }, build: (b) => b.op('Relu', ['X']) },
  { rule: 'LeakyRelu', name: 'LeakyRelu', inputs: { X: [3, 4] }, build: (b) => b.op('LeakyRelu', ['X'], { alpha: 0.1 }) },
  { rule: 'Sigmoid', name: 'Sigmoid', inputs: { X: [3, 4] }, build: (b) => b.op('Sigmoid', ['X']) },
  { rule: 'Tanh', name: 'Tanh', inputs: { X: [3, 4] }, build: (b) => b.op('Tanh', ['X']) },
  { rule: 'Softplus', name: 'Softplus', inputs: { X: [3, 4] }, build: (b) => b.op('Softplus', ['X']) },
  { rule: 'Exp', name: 'Exp', inputs: { X: [3, 4] }, build: (b) => b.op('Exp', ['X']) },
  { rule: 'Erf', name: 'Erf', inputs: { X: [3, 4] }, build: (b) => b.op('Erf', ['X']) },
  { rule: 'HardSwish', name: 'HardSwish on both sides of ±3', inputs: { X: [4, 6] }, values: { X: awayFrom([-3, 3], 24, 11, 3) }, build: (b) => b.op('HardSwish', ['X']) },
  { rule: 'HardSigmoid', name: 'HardSigmoid (torch alpha 1/6) on both sides of the ramp', inputs: { X: [4, 6] }, values: { X: awayFrom([-3, 3], 24, 12, 3) }, build: (b) => b.op('HardSigmoid', ['X'], { alpha: 1 / 6, beta: 0.5 }) },
  { rule: 'Clip', name: 'Clip [0, 6] (ReLU6)', inputs: { X: [4, 6] }, values: { X: awayFrom([0, 6], 24, 13, 4) }, build: (b) => b.op('Clip', ['X', b.scalar(0), b.scalar(6)]) },
  { rule: 'Clip', name: 'Clip with only a max', inputs: { X: [3, 4] }, values: { X: awayFrom([0.5], 12, 14, 1) }, build: (b) => b.op('Clip', ['X', '', b.scalar(0.5)]) },
  { rule: 'Log', name: 'Log', inputs: { X: [3, 4] }, values: { X: positive(12, 3) }, build: (b) => b.op('Log', ['X']) },
  { rule: 'Sqrt', name: 'Sqrt', inputs: { X: [3, 4] }, values: { X: positive(12, 4) }, build: (b) => b.op('Sqrt', ['X']) },
  { rule: 'Reciprocal', name: 'Reciprocal', inputs: { X: [3, 4] }, values: { X: positive(12, 5) }, build: (b) => b.op('Reciprocal', ['X']) },
  { rule: 'Neg', name: 'Neg', inputs: { X: [5] }, build: (b) => b.op('Neg', ['X']) },
  { rule: 'Abs', name: 'Abs', inputs: { X: [5] }, build: (b) => b.op('Abs', ['X']) },
  { rule: 'Cast', name: 'Cast float→float', inputs: { X: [5] }, build: (b) => b.op('Cast', ['X'], { to: 1 }) },
  { rule: 'Add', name: 'Add with broadcasting', inputs: { A: [2, 3, 4], B: [3, 1] }, build: (b) => b.op('Add', ['A', 'B']) },
  { rule: 'Sub', name: 'Sub with broadcasting', inputs: { A: [4], B: [2, 3, 4] }, build: (b) => b.op('Sub', ['A', 'B']) },
  { rule: 'Mul', name: 'Mul with broadcasting', inputs: { A: [2, 1, 4], B: [3, 1] }, build: (b) => b.op('Mul', ['A', 'B']) },
  { rule: 'Mul', name: 'Mul fan-out (x·x)', inputs: { A: [3, 4] }, build: (b) => b.op('Mul', ['A', 'A']) },
  { rule: 'Div', name: 'Div with broadcasting', inputs: { A: [2, 3], B: [3] }, values: { B: positive(3, 6) }, build: (b) => b.op('Div', ['A', 'B']) },
  { rule: 'Pow', name: 'Pow (constant 2)', inputs: { A: [2, 3] }, build: (b) => b.op('Pow', ['A', b.scalar(2)]) },
  { rule: 'Pow', name: 'Pow (both variable)', inputs: { A: [2, 3], E: [3] }, values: { A: positive(6, 7) }, build: (b) => b.op('Pow', ['A', 'E']) },
  { rule: 'Sum', name: 'Sum (variadic, broadcasting)', inputs: { A: [2, 3], B: [3], C: [2, 1] }, build: (b) => b.op('Sum', ['A', 'B', 'C']) },
  { rule: 'Where', name: 'Where', inputs: { A: [2, 3], B: [3] }, build: (b) => b.op('Where', [b.op('Greater', ['A', b.scalar(0)]), 'A', 'B']) },
  { rule: 'Expand', name: 'Expand', inputs: { A: [3, 1] }, build: (b) => b.op('Expand', ['A', b.ints([2, 3, 4])]) },
  { rule: 'MatMul', name: 'MatMul 2-D', inputs: { A: [3, 4], B: [4, 5] }, build: (b) => b.op('MatMul', ['A', 'B']) },
  { rule: 'MatMul', name: 'MatMul batched × 2-D', inputs: { A: [2, 3, 4], B: [4, 5] }, build: (b) => b.op('MatMul', ['A', 'B']) },
  { rule: 'MatMul', name: 'MatMul broadcast batch', inputs: { A: [2, 1, 3, 4], B: [3, 4, 2] }, build: (b) => b.op('MatMul', ['A', 'B']) },
  ...[[0, 0], [1, 0], [0, 1], [1, 1]].map(([ta, tb]): Case => ({
    rule: 'Gemm', name: `Gemm transA=${ta} transB=${tb} alpha/beta`,
    inputs: { A: ta ? [4, 3] : [3, 4], B: tb ? [5, 4] : [4, 5], C: [5] },
    build: (b) => b.op('Gemm', ['A', 'B', 'C'], { transA: ta, transB: tb, alpha: 0.7, beta: 1.3 }),
  })),
  { rule: 'Flatten', name: 'Flatten', inputs: { X: [2, 3, 2, 2] }, build: (b) => b.op('Flatten', ['X'], { axis: 1 }) },
  { rule: 'Reshape', name: 'Reshape with -1', inputs: { X: [2, 3, 4] }, build: (b) => b.op('Reshape', ['X', b.ints([4, -1])]) },
  { rule: 'Squeeze', name: 'Squeeze', inputs: { X: [2, 1, 3] }, build: (b) => b.op('Squeeze', ['X', b.ints([1])]) },
  { rule: 'Unsqueeze', name: 'Unsqueeze', inputs: { X: [2, 3] }, build: (b) => b.op('Unsqueeze', ['X', b.ints([0, 3])]) },
  { rule: 'Transpose', name: 'Transpose', inputs: { X: [2, 3, 4] }, build: (b) => b.op('Transpose', ['X'], { perm: [2, 0, 1] }) },
  { rule: 'Concat', name: 'Concat', inputs: { A: [2, 3], B: [2, 2] }, build: (b) => b.op('Concat', ['A', 'B'], { axis: 1 }) },
  { rule: 'Concat', name: 'Concat with a symbolic axis', inputs: { A: [2, 3], B: [1, 3] }, declared: { A: ['N', 3], B: ['M', 3] }, build: (b) => b.op('Concat', ['A', 'B'], { axis: 0 }) },
  { rule: 'Split', name: 'Split into given sizes', inputs: { X: [2, 5, 3] }, build: (b) => b.op('Concat', b.opN('Split', ['X', b.ints([2, 3])], { axis: 1 }, 2).reverse(), { axis: 1 }) },
  { rule: 'Split', name: 'Split, equal parts, one part unused', inputs: { X: [2, 6] }, build: (b) => b.opN('Split', ['X'], { axis: -1 }, 3)[1] },
  { rule: 'Gather', name: 'Gather a constant scalar index (class token)', inputs: { X: [2, 4, 3] }, build: (b) => b.op('Gather', ['X', b.constant('int64', [-4], [])], { axis: 1 }) },
  { rule: 'Gather', name: 'Gather repeated and negative indices along axis 1', inputs: { X: [2, 4, 3] }, build: (b) => b.op('Gather', ['X', b.constant('int64', [3, -1, 0, 1, 1, 2], [2, 3])], { axis: 1 }) },
  { rule: 'Gather', name: 'Gather rows (axis 0, embedding lookup)', inputs: { X: [5, 3] }, build: (b) => b.op('Gather', ['X', b.constant('int64', [4, 0, 4], [3])], { axis: 0 }) },
  { rule: 'LayerNormalization', name: 'LayerNormalization over the last axis', inputs: { X: [2, 3, 5], S: [5], B: [5] }, build: (b) => b.op('LayerNormalization', ['X', 'S', 'B'], { epsilon: 1e-5 }) },
  { rule: 'LayerNormalization', name: 'LayerNormalization over axes 1.. (no bias), symbolic batch', inputs: { X: [3, 2, 4], S: [2, 4] }, declared: { X: ['N', 2, 4] }, build: (b) => b.op('LayerNormalization', ['X', 'S'], { axis: 1, epsilon: 1e-5 }) },
  { rule: 'Slice', name: 'Slice constant bounds, negative start', inputs: { X: [4, 5] }, build: (b) => b.op('Slice', ['X', b.ints([1, -3]), b.ints([3, 100]), b.ints([0, 1])]) },
  {
    rule: 'Slice', name: 'Slice with run-time bounds (source rows of a combined batch)', inputs: { X: [5, 3] }, declared: { X: ['N', 3] },
    build: (b, g: Graph) => {
      g.inputs.push({ name: 'n', dtype: 'int64', shape: [1] });
      g.initializers.set('n', { dtype: 'int64', dims: [1], data: new BigInt64Array([2n]) });
      g.inputs.pop();
      return b.op('Slice', ['X', b.ints([0]), b.op('Identity', ['n']), b.ints([0])]);
    },
  },
  { rule: 'Pad', name: 'Pad constant (incl. a crop)', inputs: { X: [2, 3, 4] }, build: (b) => b.op('Pad', ['X', b.ints([0, 1, 2, 0, -1, 1])]) },
  { rule: 'ReduceSum', name: 'ReduceSum keepdims=0', inputs: { X: [2, 3, 4] }, build: (b) => b.op('ReduceSum', ['X', b.ints([0, 2])], { keepdims: 0 }) },
  { rule: 'ReduceMean', name: 'ReduceMean (opset 17 attribute axes)', inputs: { X: [2, 3, 4] }, build: (b) => b.op('ReduceMean', ['X'], { axes: [1], keepdims: 1 }) },
  { rule: 'ReduceMean', name: 'ReduceMean all axes, symbolic batch', inputs: { X: [3, 4] }, declared: { X: ['N', 4] }, build: (b) => b.op('ReduceMean', ['X'], { keepdims: 0 }) },
  { rule: 'GlobalAveragePool', name: 'GlobalAveragePool', inputs: { X: [2, 3, 3, 5] }, build: (b) => b.op('GlobalAveragePool', ['X']) },
  { rule: 'AveragePool', name: 'AveragePool 2×2 s2', inputs: { X: [2, 3, 4, 4] }, build: (b) => b.op('AveragePool', ['X'], { kernel_shape: [2, 2], strides: [2, 2] }) },
  { rule: 'AveragePool', name: 'AveragePool 3×3 s2 pad, odd size, exclude pad', inputs: { X: [1, 2, 7, 6] }, build: (b) => b.op('AveragePool', ['X'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }) },
  { rule: 'AveragePool', name: 'AveragePool count_include_pad', inputs: { X: [1, 2, 5, 5] }, build: (b) => b.op('AveragePool', ['X'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1 }) },
  { rule: 'AveragePool', name: 'AveragePool 3×3 s2 ceil_mode (last window past the end)', inputs: { X: [1, 2, 6, 7] }, build: (b) => b.op('AveragePool', ['X'], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }) },
  { rule: 'AveragePool', name: 'AveragePool 2×2 s2 p1 ceil_mode count_include_pad', inputs: { X: [1, 2, 5, 6] }, build: (b) => b.op('AveragePool', ['X'], { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1, count_include_pad: 1 }) },
  { rule: 'MaxPool', name: 'MaxPool 3×3 s2 ceil_mode', inputs: { X: [2, 2, 6, 8] }, build: (b) => b.op('MaxPool', ['X'], { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }) },
  { rule: 'MaxPool', name: 'MaxPool 3×3 s2 p1 (ResNet stem), odd size', inputs: { X: [2, 3, 7, 9] }, build: (b) => b.op('MaxPool', ['X'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }) },
  { rule: 'Softmax', name: 'Softmax', inputs: { X: [3, 4] }, build: (b) => b.op('Softmax', ['X'], { axis: 1 }) },
  { rule: 'LogSoftmax', name: 'LogSoftmax', inputs: { X: [3, 4] }, build: (b) => b.op('LogSoftmax', ['X'], { axis: -1 }) },
  {
    rule: 'SoftmaxCrossEntropyLoss', name: 'SoftmaxCrossEntropyLoss mean, with an ignored label', inputs: { X: [4, 3] },
    build: (b: Builder, g: Graph) => {
      g.initializers.set('labels', { dtype: 'int64', dims: [4], data: BigInt64Array.from([2n, 0n, -100n, 1n]) });
      return b.opN('SoftmaxCrossEntropyLoss', ['X', 'labels'], { reduction: 'mean', ignore_index: -100 }, 1)[0];
    },
  },
  {
    rule: 'SoftmaxCrossEntropyLoss', name: 'SoftmaxCrossEntropyLoss reduction none', inputs: { X: [3, 4] },
    build: (b: Builder, g: Graph) => {
      g.initializers.set('labels', { dtype: 'int64', dims: [3], data: BigInt64Array.from([3n, 0n, 1n]) });
      return b.opN('SoftmaxCrossEntropyLoss', ['X', 'labels'], { reduction: 'none' }, 1)[0];
    },
  },
  conv([2, 3, 6, 6], [4, 3, 3, 3], { pads: [1, 1, 1, 1] }),
  conv([2, 5, 7, 7], [4, 5, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }),
  conv([2, 5, 8, 8], [4, 5, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }, false),
  conv([1, 5, 8, 7], [6, 5, 1, 1], { strides: [2, 2] }),
  conv([2, 3, 11, 11], [4, 3, 7, 7], { pads: [3, 3, 3, 3], strides: [2, 2] }, false),
  conv([1, 6, 9, 9], [3, 6, 3, 3], { dilations: [2, 2], pads: [2, 2, 2, 2] }),
  conv([1, 6, 9, 8], [3, 6, 3, 2], { pads: [0, 1, 2, 0] }),
  conv([2, 6, 2, 2], [5, 6, 4, 4], { pads: [1, 1, 1, 1], strides: [2, 2] }),
  conv([1, 6, 10, 10], [3, 6, 3, 3], { strides: [3, 3], dilations: [2, 2], pads: [1, 1, 1, 1] }),
  // Grouped: the loss is linear in X and in W, so a wide step has no truncation error and keeps float32 rounding of the many outputs small.
  ...[
    conv([2, 4, 7, 7], [6, 2, 3, 3], { group: 2, pads: [1, 1, 1, 1] }),
    conv([2, 4, 7, 7], [4, 1, 3, 3], { group: 4, pads: [1, 1, 1, 1], strides: [2, 2] }, false),
    conv([2, 3, 6, 6], [6, 1, 3, 3], { group: 3, pads: [1, 1, 1, 1] }),
    conv([1, 4, 9, 9], [4, 1, 5, 5], { group: 4, pads: [2, 2, 2, 2], strides: [2, 2] }),
    conv([1, 4, 9, 8], [4, 1, 3, 3], { group: 4, pads: [2, 2, 2, 2], dilations: [2, 2] }),
    conv([2, 8, 5, 5], [4, 2, 1, 1], { group: 4 }),
  ].map((c) => ({ ...c, eps: 0.1 })),
  {
    rule: 'BatchNormalization', name: 'BatchNormalization inference, all inputs', inputs: { X: [2, 3, 2, 2], S: [3], B: [3], M: [3], V: [3] }, values: { V: positive(3, 9) },
    build: (b) => b.op('BatchNormalization', ['X', 'S', 'B', 'M', 'V'], { epsilon: 1e-5 }),
  },
  {
    rule: 'ort_dann:BatchNormalizationTrain', name: 'BatchNormalization training mode (batch statistics)', inputs: { X: [3, 2, 3, 2], S: [2], B: [2] },
    constant: { RM: { dims: [2], data: new Float32Array([0.1, -0.2]) }, RV: { dims: [2], data: new Float32Array([1, 2]) } },
    build: (b) => b.opN('BatchNormalization', ['X', 'S', 'B', 'RM', 'RV'], { epsilon: 1e-5, momentum: 0.9, training_mode: 1 }, 3)[0],
  },
  {
    rule: 'ort_dann:BatchNormalizationTrain', name: 'BatchNorm1d training mode, symbolic batch', inputs: { X: [4, 3], S: [3], B: [3] }, declared: { X: ['N', 3] },
    constant: { RM: { dims: [3], data: new Float32Array(3) }, RV: { dims: [3], data: new Float32Array([1, 1, 1]) } },
    build: (b) => b.opN('BatchNormalization', ['X', 'S', 'B', 'RM', 'RV'], { epsilon: 1e-5, momentum: 0.9, training_mode: 1 }, 3)[0],
  },
  ...[[2, [5, 2, 3, 2], [5, 2, 3, 2]], [1, [4, 3], ['N', 3]], [3, [3, 2, 2, 2], [3, 2, 2, 2]]].map(([nSource, dims, declared]): Case => ({
    rule: 'ort_dann:DomainBatchNormalizationTrain',
    name: `per-domain BatchNorm training mode, source rows ${nSource} of ${(dims as number[])[0]}${(declared as unknown[])[0] === 'N' ? ', symbolic batch' : ''}`,
    inputs: { X: dims as number[], S: [(dims as number[])[1]], B: [(dims as number[])[1]] }, declared: { X: declared as (number | string)[] },
    constant: Object.fromEntries(['RMs', 'RVs', 'RMt', 'RVt'].map((k) => [k, { dims: [(dims as number[])[1]], data: new Float32Array((dims as number[])[1]).fill(k.includes('V') ? 1 : 0) }])),
    build: (b: Builder) => b.opN('DomainBatchNormalization', ['X', 'S', 'B', 'RMs', 'RVs', 'RMt', 'RVt', b.ints([nSource as number])], { epsilon: 1e-5, momentum: 0.9 }, 5, 'ort_dann')[0],
  })),
  {
    // ORT draws a new mask every run, so finite differences need ratio 0 here; the masked case is checked exactly below.
    rule: 'Dropout', name: 'Dropout training mode', inputs: { X: [4, 5] },
    build: (b: Builder, g: Graph) => {
      g.initializers.set('ratio', { dtype: 'float', dims: [], data: new Float32Array([0]) });
      g.initializers.set('training', { dtype: 'bool', dims: [], data: new Uint8Array([1]) });
      return b.opN('Dropout', ['X', 'ratio', 'training'], {}, 1)[0];
    },
  },
  { rule: 'Dropout', name: 'Dropout inference mode', inputs: { X: [4, 5] }, build: (b: Builder) => b.op('Dropout', ['X']) },
  {
    rule: 'ort_dann:GradientReversal', name: 'GradientReversal (forward identity, backward × −alpha)', inputs: { X: [3, 2] },
    constant: { alpha: { dims: [], data: new Float32Array([0.6]) } }, gradScale: -0.6,
    build: (b) => b.opN('GradientReversal', ['X', 'alpha'], {}, 1, 'ort_dann')[0],
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences`, async () => {
    await checkGradients(c);
  });
}

test('every rule in the table has a finite-difference case', () => {
  const covered = new Set(cases.map((c) => c.rule));
  const missing = Object.keys(gradientRules).filter((r) => !covered.has(r));
  assert.deepEqual(missing, []);
});

test('docs/autodiff.md names every op that has a gradient rule', () => {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'autodiff.md'), 'utf8');
  const listed = doc.slice(doc.indexOf('## Supported ops'));
  const missing = Object.keys(gradientRules).filter((r) => !r.includes(':') && !new RegExp(`\\b${r}\\b`).test(listed));
  assert.deepEqual(missing, []);
});

test('generated graphs hold only ai.onnx ops after lowering the markers', async () => {
  for (const rule of ['ort_dann:GradientReversal', 'ort_dann:BatchNormalizationTrain', 'ort_dann:DomainBatchNormalizationTrain']) {
    const { graph } = await checkGradients(cases.find((c) => c.rule === rule)!);
    assert.ok(graph.nodes.every((n) => n.domain === ''), `${rule}: marker ops remain after lowering`);
    assert.equal(graph.extraOpsets.size, 0);
  }
});

test('Dropout with a drawn mask: dX = dY · mask / (1 − ratio), with the mask of the same run', async () => {
  const g = new Graph();
  const b = new Builder(g, 'fwd');
  g.inputs.push({ name: 'X', dtype: 'float', shape: [6, 7] }, { name: 'R', dtype: 'float', shape: [6, 7] });
  g.initializers.set('ratio', { dtype: 'float', dims: [], data: new Float32Array([0.3]) });
  g.initializers.set('training', { dtype: 'bool', dims: [], data: new Uint8Array([1]) });
  const [y, mask] = b.opN('Dropout', ['X', 'ratio', 'training'], {}, 2);
  const loss = b.op('ReduceSum', [b.op('Mul', [y, 'R'])], { keepdims: 0 });
  g.outputs.push({ name: mask, dtype: 'bool' });
  const grads = differentiate(g, { loss, wrt: ['X'] });
  const session = await ort.InferenceSession.create(encodeModel(g.toModel()));
  const rand = rng(3);
  const R = randn(42, rand);
  const out = await session.run({ X: new ort.Tensor('float32', randn(42, rand), [6, 7]), R: new ort.Tensor('float32', R, [6, 7]) });
  const m = out[mask].data as Uint8Array;
  const dx = out[grads.get('X')!].data as Float32Array;
  assert.ok(m.some((v) => v === 0) && m.some((v) => v === 1), 'the mask should drop some and keep some');
  for (let k = 0; k < 42; k++) assert.ok(Math.abs(dx[k] - (m[k] ? R[k] / 0.7 : 0)) < 1e-6);
});

test('every conv backward recipe matches finite differences on strided, padded, dilated and odd shapes', async () => {
  const original = convRecipePolicy.choose;
  const geometries: [number[], number[], Record<string, number[]>][] = [
    [[2, 5, 7, 7], [4, 5, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }],
    [[1, 6, 9, 8], [3, 6, 3, 2], { pads: [0, 1, 2, 0] }],
    [[1, 6, 10, 10], [3, 6, 3, 3], { strides: [3, 3], dilations: [2, 2], pads: [1, 1, 1, 1] }],
    [[2, 3, 11, 11], [4, 3, 7, 7], { pads: [3, 3, 3, 3], strides: [2, 2] }],
  ];
  try {
    for (const dw of ['per-tap-matmul', 'gathered-im2col', 'dilated-conv', 'im2col-gemm'] as const) {
      for (const dx of ['conv-transpose', 'flipped-conv'] as const) {
        convRecipePolicy.choose = (geo) => ({ dw, dx: dx === 'flipped-conv' && (geo.strides[0] > 1 || geo.strides[1] > 1) ? 'conv-transpose' : dx });
        for (const [x, w, attrs] of geometries) {
          await checkGradients({ inputs: { X: x, W: w }, build: (b) => b.op('Conv', ['X', 'W'], attrs) });
        }
      }
    }
  } finally {
    convRecipePolicy.choose = original;
  }
});

test('training-mode BatchNorm statistics are as precise as float32 allows, per domain and combined', async () => {
  // Channels far from zero with a small spread (the mean cancels) and mostly-zero ReLU-like channels, over a 50×50
  // map: a serial float32 sum of squares or an uncorrected float32 mean were ~1e-5 off (docs/autodiff.md).
  const [N, C, H, W] = [4, 6, 50, 50];
  const nSource = 2;
  const M = H * W;
  const rand = rng(11);
  const x = new Float32Array(N * C * M);
  for (let i = 0; i < x.length; i++) x[i] = Math.floor(i / M) % C % 2 ? 3 + 0.05 * (rand() - 0.5) : rand() < 0.7 ? 0 : rand();
  /** Float64 mean, unbiased variance and normalised rows of rows [r0, r1), channel c. */
  const exact = (r0: number, r1: number, c: number) => {
    const at = (r: number, s: number) => (r * C + c) * M + s;
    const n = (r1 - r0) * M;
    let mean = 0;
    for (let r = r0; r < r1; r++) for (let s = 0; s < M; s++) mean += x[at(r, s)] / n;
    let sq = 0;
    for (let r = r0; r < r1; r++) for (let s = 0; s < M; s++) sq += (x[at(r, s)] - mean) ** 2;
    const invstd = 1 / Math.sqrt(sq / n + 1e-5);
    return { mean, unbiased: sq / (n - 1), y: (r: number, s: number) => (x[at(r, s)] - mean) * invstd, at };
  };
  const forms = [
    { name: 'per-domain', groups: [[0, nSource], [nSource, N]], build: (b: Builder) => b.opN('DomainBatchNormalization', ['X', 'S', 'B', 'RM', 'RV', 'RM', 'RV', b.ints([nSource])], { epsilon: 1e-5, momentum: 0 }, 5, 'ort_dann') },
    { name: 'combined', groups: [[0, N]], build: (b: Builder) => b.opN('BatchNormalization', ['X', 'S', 'B', 'RM', 'RV'], { epsilon: 1e-5, momentum: 0, training_mode: 1 }, 3) },
  ];
  for (const form of forms) {
    const g = new Graph();
    const b = new Builder(g, 'fwd');
    g.inputs.push({ name: 'X', dtype: 'float', shape: [N, C, H, W] });
    for (const [name, fill] of [['S', 1], ['B', 0], ['RM', 0], ['RV', 1]] as const) g.initializers.set(name, { dtype: 'float', dims: [C], data: new Float32Array(C).fill(fill) });
    if (form.name === 'per-domain') g.extraOpsets.set('ort_dann', 1);
    // Momentum 0: the updated running statistics are the batch mean and unbiased variance themselves.
    const [y, ...stats] = form.build(b);
    g.outputs.push(...[y, ...stats].map((name) => ({ name, dtype: 'float' as const })));
    differentiate(g, { loss: b.op('ReduceSum', [y], { keepdims: 0 }), wrt: ['X'] });
    const out = await (await ort.InferenceSession.create(encodeModel(g.toModel()))).run({ X: new ort.Tensor('float32', x, [N, C, H, W]) });
    const normalised = out[y].data as Float32Array;
    let statErr = 0;
    let yErr = 0;
    form.groups.forEach(([r0, r1], k) => {
      const [mean, variance] = [out[stats[2 * k]].data as Float32Array, out[stats[2 * k + 1]].data as Float32Array];
      for (let c = 0; c < C; c++) {
        const want = exact(r0, r1, c);
        statErr = Math.max(statErr, Math.abs(mean[c] - want.mean) / Math.abs(want.mean), Math.abs(variance[c] - want.unbiased) / want.unbiased);
        for (let r = r0; r < r1; r++) for (let s = 0; s < M; s++) yErr = Math.max(yErr, Math.abs(normalised[want.at(r, s)] - want.y(r, s)));
      }
    });
    console.log(`# ${form.name}: statistics ${statErr.toExponential(2)}, normalised ${yErr.toExponential(2)}`);
    assert.ok(statErr < 2e-6, `${form.name}: batch statistics off by ${statErr.toExponential(2)} (relative)`);
    // Normalised values reach ~3 here, so float32 rounding of the output alone is ~2e-7. The combined form
    // normalises with ONNX's BatchNormalization (x·s + (b − mean·s), as PyTorch's CPU kernel does), which
    // cancels on the offset channels: its output is not held here.
    if (form.name === 'per-domain') assert.ok(yErr < 3e-6, `${form.name}: normalised output off by ${yErr.toExponential(2)}`);
  }
});

test('dW gathers im2col rows for few filters on maps whose rows stay small, per tap otherwise', () => {
  const layer = (C: number, K: number, side: number): ConvGeometry => ({ C, H: side, W: side, K, kh: 3, kw: 3, OH: side, OW: side, strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] });
  assert.equal(chooseConvRecipes(layer(64, 64, 32)).dw, 'gathered-im2col'); // ResNet34 layer1 at 128 px
  assert.equal(chooseConvRecipes(layer(64, 64, 64)).dw, 'gathered-im2col'); // and at 256 px: 2.36M floats per image
  assert.ok(64 * 64 * 9 * 64 <= GATHERED_IM2COL_LIMIT);
  assert.equal(chooseConvRecipes(layer(64, 64, 128)).dw, 'per-tap-matmul'); // 512 px: 9.4M floats per image
  assert.equal(chooseConvRecipes(layer(512, 512, 4)).dw, 'per-tap-matmul'); // 512 filters
});
