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
 * y = BN(x) with batch statistics, as PyTorch's train() mode computes it; running stats use the
 * unbiased batch variance (PyTorch), where ONNX's training_mode would use the biased one.
 */
function lowerTrainingBatchNorm(g: Graph, b: Builder, node: Node): void {
  const [x, scale, bias, runMean, runVar] = node.inputs;
  const [y, newMean, newVar] = node.outputs;
  const epsilon = attrFloat(node, 'epsilon', 1e-5);
  const onnxMomentum = attrFloat(node, 'momentum', 0.9);
  const rank = g.info(x)?.shape?.length ?? 4;
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
  const reduceMean = (v: string) => (g.opset >= 18
    ? b.op('ReduceMean', [v, b.ints(axes)], { keepdims: 0 })
    : b.op('ReduceMean', [v], { axes, keepdims: 0 }));
  const mean = reduceMean(x);
  const view = rank > 2 ? b.op('Unsqueeze', [mean, b.ints(axes.slice(1).map((a) => a - 1))]) : mean;
  const centred = b.op('Sub', [x, view]);
  const variance = reduceMean(b.op('Mul', [centred, centred]));
  // The marker also carries x − mean: the backward reads it instead of x, which avoids the cancellation
  // of the one-pass formulas when |mean| ≫ std (measured: 1e-1 relative errors deep in ResNet34).
  b.opN('BatchNormalizationTrain', [x, scale, bias, mean, variance, centred], { epsilon }, [y], MARKER_DOMAIN);
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
      node.inputs = node.inputs.slice(0, 5);
    } else throw new Error(`internal: unknown marker ${node.op}`);
    node.domain = '';
  }
  g.extraOpsets.delete(MARKER_DOMAIN);
}
