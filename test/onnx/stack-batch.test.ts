import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { Builder } from '../../src/onnx/builder.ts';
import { Graph } from '../../src/onnx/graph.ts';
import { encodeModel } from '../../src/onnx/proto.ts';
import { stackBatchForSmallMaps } from '../../src/onnx/stack-batch.ts';
import { randn, rng } from '../helpers/gradcheck.ts';

/** A one-Conv graph (batch symbolic), optionally rewritten; returns the model and how many convs were stacked. */
function convModel(x: number[], w: number[], attrs: Record<string, number[] | number>, stack: boolean, bias = false) {
  const g = new Graph();
  const b = new Builder(g);
  g.inputs.push({ name: 'X', dtype: 'float', shape: ['N', ...x.slice(1)] }, { name: 'W', dtype: 'float', shape: w });
  if (bias) g.inputs.push({ name: 'B', dtype: 'float', shape: [w[0]] });
  b.op('Conv', bias ? ['X', 'W', 'B'] : ['X', 'W'], { kernel_shape: w.slice(2), ...attrs }, 'Y');
  g.outputs.push({ name: 'Y', dtype: 'float' });
  const stacked = stack ? stackBatchForSmallMaps(g) : 0;
  return { model: encodeModel(g.toModel()), stacked };
}

async function run(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(model);
  try {
    return (await session.run(feeds)).Y;
  } finally {
    await session.release();
  }
}

test('convolutions with more filters than output positions run stacked, with the same result', async () => {
  const cases: [number[], number[], Record<string, number[]>, boolean][] = [
    [[4, 16, 8, 8], [96, 16, 3, 3], { pads: [1, 1, 1, 1] }, false], // ResNet layer3 at 128 px, scaled down
    [[4, 16, 16, 16], [96, 16, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }, false], // its strided first conv
    [[4, 16, 16, 16], [128, 16, 1, 1], { strides: [2, 2] }, true], // the 1×1 downsample, with a bias
    [[3, 8, 4, 4], [32, 8, 3, 3], { pads: [1, 1, 1, 1] }, false], // layer4: 25 % extra rows
    [[2, 8, 2, 2], [32, 8, 4, 4], { pads: [1, 1, 1, 1], strides: [2, 2] }, false], // a 1×1 output map
    [[3, 8, 5, 7], [48, 8, 3, 2], { pads: [0, 1, 2, 0] }, true], // asymmetric pads, odd sizes
    [[2, 8, 6, 6], [48, 8, 3, 3], { pads: [2, 0, 0, 1], strides: [3, 1] }, false], // stride 3, pads only above
  ];
  const r = rng(5);
  for (const [x, w, attrs, bias] of cases) {
    const plain = convModel(x, w, attrs, false, bias);
    const stacked = convModel(x, w, attrs, true, bias);
    assert.equal(stacked.stacked, 1, `${JSON.stringify([x, w, attrs])} should be stacked`);
    // Other batch sizes than the one in mind: the rewrite keeps the batch symbolic.
    for (const n of [x[0], 1, 5]) {
      const xs = [n, ...x.slice(1)];
      const feeds: Record<string, ort.Tensor> = {
        X: new ort.Tensor('float32', randn(xs.reduce((a, b) => a * b), r), xs),
        W: new ort.Tensor('float32', randn(w.reduce((a, b) => a * b), r), w),
      };
      if (bias) feeds.B = new ort.Tensor('float32', randn(w[0], r), [w[0]]);
      const [want, got] = [await run(plain.model, feeds), await run(stacked.model, feeds)];
      assert.deepEqual(got.dims, want.dims);
      const [a, b] = [want.data as Float32Array, got.data as Float32Array];
      const scale = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const worst = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
      assert.ok(worst <= 1e-6 * scale, `${JSON.stringify([xs, w, attrs])}: stacked conv off by ${worst} (scale ${scale})`);
    }
  }
});

test('convolutions that ORT already threads well, or that were not measured, keep their form', () => {
  const kept: [number[], number[], Record<string, number[] | number>][] = [
    [[4, 16, 8, 8], [64, 16, 3, 3], { pads: [1, 1, 1, 1] }], // filters = positions: MLAS threads it by batch
    [[4, 16, 8, 8], [96, 16, 3, 3], { pads: [2, 2, 2, 2], dilations: [2, 2] }], // dilated
    [[4, 16, 8, 8], [96, 8, 3, 3], { pads: [1, 1, 1, 1], group: 2 }], // grouped
  ];
  for (const [x, w, attrs] of kept) assert.equal(convModel(x, w, attrs, true).stacked, 0, JSON.stringify([x, w, attrs]));
});
