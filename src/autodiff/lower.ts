/**
 * Graph rewrites around differentiation. Before: training-mode BatchNormalization becomes batch
 * statistics + a marker node (so the backward uses the fused rule and running stats follow PyTorch's
 * unbiased update), and MaxPool/Dropout expose the outputs their gradients read. After: markers
 * become plain ai.onnx ops, so saved graphs hold standard ops only.
 */
import { Builder } from '../onnx/builder.ts';
import { type Graph, type Node, attrFloat, attrInt } from '../onnx/graph.ts';
import { DataType } from '../onnx/proto.ts';
import { MARKER_DOMAIN } from './rules.ts';

/**
 * How training-mode BatchNormalization runs forward: 'fused' uses ONNX's training kernel (fastest on
 * the CPU provider); 'ops' computes the batch statistics with ReduceMean/Sub/Mul and normalises with
 * an inference-mode BatchNormalization, for providers without a training kernel (WebGPU).
 */
export type BatchNormForward = 'fused' | 'ops';

export function prepareForDifferentiation(g: Graph, batchNorm: BatchNormForward = 'fused'): void {
  const b = new Builder(g, 'fwd');
  const pending = g.nodes;
  g.nodes = [];
  for (const node of pending) {
    if (node.op === 'MaxPool' && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/indices`);
    if (node.op === 'Dropout' && node.inputs[2] && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/mask`);
    if (node.op === 'BatchNormalization' && node.domain === '' && attrInt(node, 'training_mode', 0) === 1) {
      lowerTrainingBatchNorm(g, b, node, batchNorm);
      continue;
    }
    g.nodes.push(node);
  }
}

/**
 * y = BN(x) with batch statistics, as PyTorch's train() mode computes it. ONNX's own training-mode
 * kernel runs the forward in one fused op: with momentum 0 its "running" outputs are exactly the batch
 * mean and (biased) variance, which the backward and PyTorch's running-stat update (unbiased variance,
 * where ONNX would use the biased one) then read.
 */
function lowerTrainingBatchNorm(g: Graph, b: Builder, node: Node, forward: BatchNormForward): void {
  const [x, scale, bias, runMean, runVar] = node.inputs;
  const [y, newMean, newVar] = node.outputs;
  const epsilon = attrFloat(node, 'epsilon', 1e-5);
  const onnxMomentum = attrFloat(node, 'momentum', 0.9);
  const [mean, variance] = forward === 'ops' ? batchStatistics(g, b, x) : [g.fresh(`${node.name}/batch_mean`), g.fresh(`${node.name}/batch_var`)];
  if (forward === 'ops') {
    // Statistics as inputs, one output: the marker lowers to an inference-mode BatchNormalization.
    b.opN('BatchNormalizationTrain', [x, scale, bias, mean, variance], { epsilon }, [y], MARKER_DOMAIN);
  } else {
    lowerFusedBatchNorm(g, b, node, [mean, variance], epsilon);
  }
  g.extraOpsets.set(MARKER_DOMAIN, 1);
  if (newMean || newVar) {
    const m = 1 - onnxMomentum;
    const count = b.op('Div', [b.op('Cast', [b.op('Size', [x])], { to: DataType.float }), b.op('Cast', [b.op('Size', [mean])], { to: DataType.float })]);
    const unbiased = b.op('Div', [b.op('Mul', [variance, count]), b.op('Sub', [count, b.scalar(1)])]);
    const ema = (run: string, batch: string, out: string) => b.op('Add', [b.op('Mul', [run, b.scalar(onnxMomentum)]), b.op('Mul', [batch, b.scalar(m)])], {}, out);
    if (newMean) ema(runMean, mean, newMean);
    if (newVar) ema(runVar, unbiased, newVar);
  }
}

/** Per-channel batch mean and biased variance of an NC… tensor, as [C] vectors. */
function batchStatistics(g: Graph, b: Builder, x: string): [string, string] {
  const rank = g.info(x)?.shape?.length ?? 4;
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
  const reduceMean = (v: string) => (g.opset >= 18
    ? b.op('ReduceMean', [v, b.ints(axes)], { keepdims: 0 })
    : b.op('ReduceMean', [v], { axes, keepdims: 0 }));
  const mean = reduceMean(x);
  const view = rank > 2 ? b.op('Unsqueeze', [mean, b.ints(axes.slice(1).map((a) => a - 1))]) : mean;
  const centred = b.op('Sub', [x, view]);
  return [mean, reduceMean(b.op('Mul', [centred, centred]))];
}

function lowerFusedBatchNorm(g: Graph, b: Builder, node: Node, [mean, variance]: string[], epsilon: number): void {
  const [x, scale, bias] = node.inputs;
  const [y] = node.outputs;
  // ORT's kernel may write its statistics over its running-stat inputs (registered in-place; seen to
  // overwrite the caller's buffers), so each node gets placeholders of its own; with momentum 0 their
  // values do not matter, and the real running statistics stay intact.
  const channels = g.info(scale)?.shape?.[0];
  if (typeof channels !== 'number') throw new Error(`internal: BatchNormalization ${node.name} needs a fixed channel count`);
  const placeholders = ['mean', 'var'].map((kind) => {
    const name = g.fresh(`${node.name}/placeholder_${kind}`);
    g.initializers.set(name, { dtype: 'float', dims: [channels], data: new Float32Array(channels).fill(kind === 'var' ? 1 : 0) });
    return name;
  });
  b.opN('BatchNormalizationTrain', [x, scale, bias, ...placeholders], { epsilon }, [y, mean, variance], MARKER_DOMAIN);
}

/** Replaces marker ops by their ai.onnx forward meaning and drops the marker opset. */
export function lowerMarkers(g: Graph): void {
  for (const node of g.nodes) {
    if (node.domain !== MARKER_DOMAIN) continue;
    if (node.op === 'GradientReversal') {
      node.op = 'Identity';
      node.inputs = [node.inputs[0]];
    } else if (node.op === 'BatchNormalizationTrain') {
      node.op = 'BatchNormalization';
      // Fused form (3 outputs): the training kernel, whose momentum-0 "running" outputs are the batch stats.
      if (node.outputs.length === 3) Object.assign(node.attrs, { training_mode: { i: 1 }, momentum: { f: 0 } });
    } else throw new Error(`internal: unknown marker ${node.op}`);
    node.domain = '';
  }
  g.extraOpsets.delete(MARKER_DOMAIN);
}
