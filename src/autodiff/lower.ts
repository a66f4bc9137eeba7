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

export function prepareForDifferentiation(g: Graph): void {
  const b = new Builder(g, 'fwd');
  const pending = g.nodes;
  g.nodes = [];
  for (const node of pending) {
    if (node.op === 'MaxPool' && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/indices`);
    if (node.op === 'Dropout' && node.inputs[2] && !node.outputs[1]) node.outputs[1] = g.fresh(`${node.name}/mask`);
    if (node.op === 'BatchNormalization' && node.domain === '' && attrInt(node, 'training_mode', 0) === 1) {
      lowerTrainingBatchNorm(g, b, node);
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
function lowerTrainingBatchNorm(g: Graph, b: Builder, node: Node): void {
  const [x, scale, bias, runMean, runVar] = node.inputs;
  const [y, newMean, newVar] = node.outputs;
  const epsilon = attrFloat(node, 'epsilon', 1e-5);
  const onnxMomentum = attrFloat(node, 'momentum', 0.9);
  const [mean, variance] = [g.fresh(`${node.name}/batch_mean`), g.fresh(`${node.name}/batch_var`)];
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

/** Replaces marker ops by their ai.onnx forward meaning and drops the marker opset. */
export function lowerMarkers(g: Graph): void {
  for (const node of g.nodes) {
    if (node.domain !== MARKER_DOMAIN) continue;
    if (node.op === 'GradientReversal') {
      node.op = 'Identity';
      node.inputs = [node.inputs[0]];
    } else if (node.op === 'BatchNormalizationTrain') {
      node.op = 'BatchNormalization';
      node.attrs.training_mode = { i: 1 };
      node.attrs.momentum = { f: 0 };
    } else throw new Error(`internal: unknown marker ${node.op}`);
    node.domain = '';
  }
  g.extraOpsets.delete(MARKER_DOMAIN);
}
