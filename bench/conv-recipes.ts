/**
 * Times every conv-backward recipe of src/autodiff/conv.ts on the ResNet34-DANN layer shapes: for each
 * layer and recipe, the graph X, W → Conv → Σ(Y·R) → backward is built with that recipe forced and run
 * with the given threads; the report is the median step time per recipe (the forward is the same in
 * all, so differences are the backward's). `node --import tsx bench/conv-recipes.ts [--image-size 128]
 * [--batch 32] [--threads 2] [--runs 7] [--json]`
 */
import * as ort from 'onnxruntime-node';
import { differentiate } from '../src/autodiff/grad.ts';
import { convRecipePolicy, type DwRecipe, type DxRecipe } from '../src/autodiff/conv.ts';
import { Builder } from '../src/onnx/builder.ts';
import { Graph } from '../src/onnx/graph.ts';
import { encodeModel } from '../src/onnx/proto.ts';
import { parseArgs } from './lib/args.ts';

const { imageSize: S, batch: N, threads, runs, json } = parseArgs('conv-recipes', process.argv.slice(2), {
  imageSize: { type: 'int', default: 128, min: 32, help: 'image size in pixels' },
  batch: { type: 'int', default: 32, min: 1, help: 'images per batch' },
  threads: { type: 'int', default: 2, min: 1, help: 'intra-op threads' },
  runs: { type: 'int', default: 7, min: 1, help: 'timed runs per recipe' },
  json: { type: 'flag', help: 'one JSON object per layer' },
});

/** [name, Cin, Cout, kernel, stride, pad, input side] of each distinct ResNet34-DANN conv. */
const s = S / 4;
const layers: [string, number, number, number, number, number, number][] = [
  ['stem', 3, 64, 7, 2, 3, S], ['l1', 64, 64, 3, 1, 1, s], ['l2.0s2', 64, 128, 3, 2, 1, s], ['l2ds', 64, 128, 1, 2, 0, s],
  ['l2', 128, 128, 3, 1, 1, s / 2], ['l3.0s2', 128, 256, 3, 2, 1, s / 2], ['l3', 256, 256, 3, 1, 1, s / 4],
  ['l4.0s2', 256, 512, 3, 2, 1, s / 4], ['l4', 512, 512, 3, 1, 1, s / 8], ['extra', 512, 512, 4, 2, 1, s / 16],
];

async function time(layer: (typeof layers)[number], dx: DxRecipe, dw: DwRecipe, needDx: boolean): Promise<number> {
  const [, C, K, k, stride, pad, H] = layer;
  const g = new Graph();
  const b = new Builder(g);
  g.inputs.push({ name: 'X', dtype: 'float', shape: [N, C, H, H] }, { name: 'W', dtype: 'float', shape: [K, C, k, k] });
  const OH = Math.floor((H + 2 * pad - k) / stride) + 1;
  g.inputs.push({ name: 'R', dtype: 'float', shape: [N, K, OH, OH] });
  const y = b.op('Conv', ['X', 'W'], { kernel_shape: [k, k], strides: [stride, stride], pads: [pad, pad, pad, pad] });
  const loss = b.op('ReduceSum', [b.op('Mul', [y, 'R'])], { keepdims: 0 }, 'loss');
  g.outputs.push({ name: loss, dtype: 'float', shape: [] });
  const saved = convRecipePolicy.choose;
  convRecipePolicy.choose = () => ({ dx, dw });
  try {
    differentiate(g, { loss, wrt: needDx ? ['X', 'W'] : ['W'] });
  } finally {
    convRecipePolicy.choose = saved;
  }
  const session = await ort.InferenceSession.create(encodeModel(g.toModel()), { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const rand = (n: number) => Float32Array.from({ length: n }, () => Math.random() - 0.5);
  const feeds = {
    X: new ort.Tensor('float32', rand(N * C * H * H), [N, C, H, H]),
    W: new ort.Tensor('float32', rand(K * C * k * k), [K, C, k, k]),
    R: new ort.Tensor('float32', rand(N * K * OH * OH), [N, K, OH, OH]),
  };
  for (let w = 0; w < 2; w++) await session.run(feeds);
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    await session.run(feeds);
    times.push(performance.now() - t);
  }
  await session.release();
  return times.sort((a, b) => a - b)[runs >> 1];
}

const dxRecipes: DxRecipe[] = ['flipped-conv', 'conv-transpose', 'single-window'];
const dwRecipes: DwRecipe[] = ['per-tap-matmul', 'gathered-im2col', 'im2col-gemm', 'dilated-conv', 'single-window'];
for (const layer of layers) {
  const [name, , , k, stride, pad, H] = layer;
  const OH = Math.floor((H + 2 * pad - k) / stride) + 1;
  const applicable = (r: string) => (r === 'single-window' ? OH === 1 : r === 'flipped-conv' ? stride === 1 : true);
  const result: Record<string, number> = {};
  for (const dw of dwRecipes.filter(applicable)) result[`dW:${dw}`] = await time(layer, 'conv-transpose', dw, false);
  if (name !== 'stem') for (const dx of dxRecipes.filter(applicable)) result[`dX+dW(per-tap):${dx}`] = await time(layer, dx, 'per-tap-matmul', true);
  if (json) console.log(JSON.stringify({ layer: name, imageSize: S, batch: N, threads, ms: result }));
  else console.log(`${name.padEnd(8)} ${Object.entries(result).map(([r, ms]) => `${r} ${ms.toFixed(2)}`).join('  ')}`);
}
