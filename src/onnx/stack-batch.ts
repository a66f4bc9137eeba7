/**
 * Convolutions on maps smaller than their filter count, rewritten to run on the whole batch stacked
 * into one tall image. ONNX Runtime's CPU Conv (MLAS) takes such a conv one image at a time: a serial
 * im2col, then a GEMM too small to split well across threads (K filters × OH·OW positions), so these
 * layers did not speed up past one thread (ResNet34 at 128 px: layer3's 8×8 and layer4's 4×4 maps).
 * Stacked with zero rows between images, the conv has N·P positions, and MLAS splits them over the
 * threads. The result is exact; the extra zero rows cost (P − H)/H more work (docs/conv-backward.md).
 */
import { Builder } from './builder.ts';
import { type Graph, type Node, attrInt, attrInts, attrString } from './graph.ts';
import { inferShapes } from './shapes.ts';

/** How one Conv is stacked: its sizes and attributes, the period of the stack and its bottom padding. */
interface Stacking {
  C: number; H: number; W: number; K: number; OH: number; OW: number;
  /** [top, left, bottom, right] of the original Conv. */
  pads: number[];
  stride: number;
  /** Rows per image in the stack (image, then zeros), a multiple of the stride. */
  period: number;
  /** Bottom padding of the stacked image, so it yields exactly period/stride output rows per image. */
  bottomPad: number;
}

/** MLAS splits a conv across threads by batch or by positions only when filters ≤ positions per image. */
function stacking(node: Node, x: readonly unknown[], w: readonly unknown[], y: readonly unknown[]): Stacking | undefined {
  if (node.op !== 'Conv' || node.domain !== '' || x.length !== 4 || w.length !== 4 || y.length !== 4) return undefined;
  if (attrInt(node, 'group', 1) !== 1 || attrString(node, 'auto_pad', 'NOTSET') !== 'NOTSET') return undefined;
  const sizes = [x[1], x[2], x[3], w[0], w[2], y[2], y[3]];
  if (!sizes.every((d) => typeof d === 'number')) return undefined;
  const [C, H, W, K, kh, OH, OW] = sizes as number[];
  if (K <= OH * OW) return undefined;
  // Dilated convs (the stem's dW) were not measured; they keep ORT's path.
  if ((attrInts(node, 'dilations') ?? []).some((d) => d !== 1)) return undefined;
  const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
  const stride = (attrInts(node, 'strides') ?? [1])[0];
  const top = pads[0];
  if (top >= kh) return undefined;
  // An image's window never reaches the next image: the zeros after it cover the bottom padding and the
  // zeros before the next image its top padding.
  const span = Math.max(H + top, (OH - 1) * stride - top + kh);
  const period = Math.ceil(span / stride) * stride;
  return { C, H, W, K, OH, OW, pads, stride, period, bottomPad: Math.max(0, kh - top - stride) };
}

/** Rewrites every Conv that `stacking` accepts; shapes are inferred first. Returns how many it rewrote. */
export function stackBatchForSmallMaps(g: Graph): number {
  inferShapes(g);
  const b = new Builder(g, 'stack');
  const pending = g.nodes;
  g.nodes = [];
  let rewritten = 0;
  for (const node of pending) {
    const [x, w, y] = [g.info(node.inputs[0])?.shape, g.info(node.inputs[1])?.shape, g.info(node.outputs[0])?.shape];
    const plan = x && w && y ? stacking(node, x, w, y) : undefined;
    if (!plan) {
      g.nodes.push(node);
      continue;
    }
    const { C, H, W, K, OH, OW, pads, stride, period, bottomPad } = plan;
    const padded = period > H ? b.op('Pad', [node.inputs[0], b.ints([0, 0, 0, 0, 0, 0, period - H, 0])]) : node.inputs[0];
    const stacked = b.op('Reshape', [b.op('Transpose', [padded], { perm: [1, 0, 2, 3] }), b.ints([1, C, -1, W])]);
    const attrs = { ...node.attrs, pads: { ints: [pads[0], pads[1], bottomPad, pads[3]] } };
    const [out] = b.opN('Conv', [stacked, ...node.inputs.slice(1)], attrs, 1);
    const perImage = b.op('Reshape', [out, b.ints([K, -1, period / stride, OW])]);
    const cut = period / stride > OH ? b.op('Slice', [perImage, b.ints([0]), b.ints([OH]), b.ints([2])]) : perImage;
    b.op('Transpose', [cut], { perm: [1, 0, 2, 3] }, node.outputs[0]);
    rewritten++;
  }
  inferShapes(g);
  return rewritten;
}
