/**
 * Graph rewrites around differentiation. Before: training-mode BatchNormalization becomes batch
 * statistics from plain ops + a marker node (so the backward uses the fused rule and running stats
 * follow PyTorch's unbiased update), and MaxPool, Dropout and LayerNormalization expose the outputs
 * their gradients read. After: markers become plain ai.onnx ops, so saved graphs hold standard ops only.
 */
import { Builder } from '../onnx/builder.ts';
import { UserError } from '../errors.ts';
import { type Dim, type Graph, type Node, attrFloat, attrInt } from '../onnx/graph.ts';
import { DataType } from '../onnx/proto.ts';
import { MARKER_DOMAIN } from './rules.ts';

export function prepareForDifferentiation(g: Graph): void {
  const b = new Builder(g, 'fwd');
  const pending = g.nodes;
  g.nodes = [];
  for (const node of pending) {
    if (node.op === 'MaxPool' && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/indices`);
    if (node.op === 'LayerNormalization') {
      for (const [k, what] of [[1, 'mean'], [2, 'invstd']] as const) if (!node.outputs[k]) node.outputs[k] = g.fresh(`${node.name}/${what}`);
    }
    if (node.op === 'Dropout' && node.inputs[2] && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/mask`);
    if (node.op === 'BatchNormalization' && node.domain === '' && attrInt(node, 'training_mode', 0) === 1) {
      lowerTrainingBatchNorm(g, b, node);
      continue;
    }
    g.nodes.push(node);
  }
}

/**
 * y = BN(x) with batch statistics, as PyTorch's train() mode computes it: mean and biased variance
 * from plain reductions, then an inference-mode BatchNormalization. ONNX's training-mode kernel is
 * never emitted: ORT registers its running-stat outputs as aliases of its inputs and writes them in
 * place, and its optimizer merges equal constant inputs (another node's placeholders, or a BN weight of
 * ones), so a backward reading those outputs read whatever the last writer left (docs/autodiff.md).
 * The statistics here are ordinary values no kernel may write over. The running statistics follow
 * PyTorch's update (unbiased variance, where ONNX's kernel would use the biased one).
 */
function lowerTrainingBatchNorm(g: Graph, b: Builder, node: Node): void {
  const [x, scale, bias, runMean, runVar] = node.inputs;
  const [y, newMean, newVar] = node.outputs;
  const epsilon = attrFloat(node, 'epsilon', 1e-5);
  const onnxMomentum = attrFloat(node, 'momentum', 0.9);
  const shape = g.info(x)?.shape;
  if (!shape) throw new UserError(`node ${node.name} (BatchNormalization): the shape of its input ${x} is unknown; give the model's inputs full shapes`);
  const { mean, variance, centred, count } = batchStatistics(b, x, shape);
  // `centred` rides along so the backward reuses it instead of subtracting the mean again.
  b.opN('BatchNormalizationTrain', [x, scale, bias, mean, variance, centred], { epsilon }, [y], MARKER_DOMAIN);
  g.extraOpsets.set(MARKER_DOMAIN, 1);
  if (newMean || newVar) {
    const m = 1 - onnxMomentum;
    const unbiased = b.op('Div', [b.op('Mul', [variance, count]), b.op('Sub', [count, b.scalar(1)])]);
    const ema = (run: string, batch: string, out: string) => b.op('Add', [b.op('Mul', [run, b.scalar(onnxMomentum)]), b.op('Mul', [batch, b.scalar(m)])], {}, out);
    if (newMean) ema(runMean, mean, newMean);
    if (newVar) ema(runVar, unbiased, newVar);
  }
}

/**
 * Per-channel batch mean and biased variance of an NC… tensor as [C] vectors, x − mean, and the element count per channel.
 * With a dynamic batch the count is at least 1, so the statistics of an empty batch (a domain with no rows in
 * this batch, docs/domain-batchnorm.md) are zeros rather than 0/0, and the backward stays finite.
 */
function batchStatistics(b: Builder, x: string, shape: Dim[]): { mean: string; variance: string; centred: string; count: string } {
  const { g } = b;
  const rank = shape.length;
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
  // ReduceSum took its axes as an input from opset 13, the other reductions from opset 18.
  const reduce = (op: string, v: string) => (g.opset >= (op === 'ReduceSum' ? 13 : 18)
    ? b.op(op, [v, b.ints(axes)], { keepdims: 0 })
    : b.op(op, [v], { axes, keepdims: 0 }));
  const dims = axes.map((a) => shape[a]);
  const staticCount = dims.every((d) => typeof d === 'number');
  const count = staticCount
    ? b.scalar((dims as number[]).reduce((p, q) => p * q, 1))
    : b.op('Max', [b.scalar(1), b.op('Div', [b.op('Cast', [b.op('Size', [x])], { to: DataType.float }), b.op('Cast', [b.op('Slice', [b.op('Shape', [x]), b.ints([1]), b.ints([2])])], { to: DataType.float })])]);
  const mean = staticCount ? reduce('ReduceMean', x) : b.op('Div', [reduce('ReduceSum', x), count]);
  const view = rank > 2 ? b.op('Unsqueeze', [mean, b.ints(axes.slice(1).map((a) => a - 1))]) : mean;
  const centred = b.op('Sub', [x, view]);
  return { mean, variance: b.op('Div', [reduce('ReduceSumSquare', centred), count]), centred, count };
}

/** Replaces marker ops by their ai.onnx forward meaning and drops the marker opset. */
export function lowerMarkers(g: Graph): void {
  for (const node of g.nodes) {
    if (node.domain !== MARKER_DOMAIN) continue;
    if (node.op === 'GradientReversal') {
      node.op = 'Identity';
      node.inputs = [node.inputs[0]];
    } else if (node.op === 'BatchNormalizationTrain') {
      // Inference mode over the batch statistics; `centred` was only for the backward.
      node.op = 'BatchNormalization';
      node.inputs = node.inputs.slice(0, 5);
    } else throw new Error(`internal: unknown marker ${node.op}`);
    node.domain = '';
  }
  g.extraOpsets.delete(MARKER_DOMAIN);
}
