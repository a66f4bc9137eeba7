/**
 * Graph rewrites around differentiation. Before: training-mode BatchNormalization (and the per-domain
 * marker DomainBatchNormalization) becomes batch statistics from plain ops + a marker node (so the
 * backward uses the fused rule and running stats follow PyTorch's unbiased update), and MaxPool,
 * Dropout and LayerNormalization expose the outputs their gradients read. After: markers become plain
 * ai.onnx ops, so saved graphs hold standard ops only.
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
    if (node.op === 'DomainBatchNormalization' && node.domain === MARKER_DOMAIN) {
      lowerDomainBatchNorm(g, b, node);
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
  const { mean, variance, centred, count } = batchStatistics(b, x, inputShape(g, node, x));
  // `centred` rides along so the backward reuses it instead of subtracting the mean again, and `count` so the
  // backward never reads x: a Size(x) there would keep x alive from the forward to the backward (docs/autodiff.md).
  b.opN('BatchNormalizationTrain', [x, scale, bias, mean, variance, centred, count], { epsilon }, [y], MARKER_DOMAIN);
  g.extraOpsets.set(MARKER_DOMAIN, 1);
  if (newMean) runningUpdate(b, onnxMomentum, runMean, mean, newMean);
  if (newVar) runningUpdate(b, onnxMomentum, runVar, unbiasedVariance(b, variance, count), newVar);
}

function inputShape(g: Graph, node: Node, x: string): Dim[] {
  const shape = g.info(x)?.shape;
  if (!shape) throw new UserError(`node ${node.name} (BatchNormalization): the shape of its input ${x} is unknown; give the model's inputs full shapes`);
  return shape;
}

/** PyTorch's unbiased batch variance from the biased one over `count` elements. */
function unbiasedVariance(b: Builder, variance: string, count: string): string {
  return b.op('Div', [b.op('Mul', [variance, count]), b.op('Sub', [count, b.scalar(1)])]);
}

/** A running statistic's update, in ONNX's momentum convention: run · momentum + batch · (1 − momentum), into `out`. */
function runningUpdate(b: Builder, onnxMomentum: number, run: string, batch: string, out: string): void {
  b.op('Add', [b.op('Mul', [run, b.scalar(onnxMomentum)]), b.op('Mul', [batch, b.scalar(1 - onnxMomentum)])], {}, out);
}

/**
 * Per-channel batch mean and biased variance of an NC… tensor as [C] vectors, x − mean, and the element count per channel.
 * With a dynamic batch the count is at least 1, so the statistics of an empty batch (a domain with no rows in
 * this batch, docs/domain-batchnorm.md) are zeros rather than 0/0, and the backward stays finite.
 */
function batchStatistics(b: Builder, x: string, shape: Dim[]): { mean: string; variance: string; centred: string; count: string } {
  const rank = shape.length;
  const axes = [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
  const reduce = (op: string, v: string) => reduceOver(b, op, v, axes);
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

/**
 * A reduction over `axes` without keepdims; ReduceSum took its axes as an input from opset 13, the others from 18.
 * ReduceSumSquare over several axes is staged: ORT's CPU kernel sums them in one serial float32 chain, off by
 * ~2e-6 relative over a 50×50 map (BatchNorm variances, so every normalised value), while the innermost axis alone
 * and ReduceSum's vectorised kernel stay near float32 rounding (1e-7; docs/da-parity.md).
 */
function reduceOver(b: Builder, op: string, v: string, axes: number[]): string {
  if (op === 'ReduceSumSquare' && axes.length > 1) {
    const last = Math.max(...axes);
    return reduceOver(b, 'ReduceSum', reduceOver(b, op, v, [last]), axes.filter((a) => a !== last));
  }
  return b.g.opset >= (op === 'ReduceSum' ? 13 : 18) ? b.op(op, [v, b.ints(axes)], { keepdims: 0 }) : b.op(op, [v], { axes, keepdims: 0 });
}

/**
 * Per-domain batch statistics (docs/domain-batchnorm.md): the first n_source rows are normalised with
 * their own mean and biased variance, the rest with theirs, without slicing x. Per-row channel sums
 * ([N, C]) are summed by domain with a [2, N] row-to-domain matrix D, and the per-domain [2, C] values go
 * back to rows through Dᵀ. x is read only here in the forward, so nothing keeps it until the backward
 * (slices of it, a Concat of the halves and their shapes did: ~300 MB more peak memory at 128 px, 32 rows).
 * The marker carries the plain-op result as input 0 and what the fused backward reads; its gradient
 * reaches x, scale and bias through the rule alone. Running statistics follow PyTorch's unbiased update,
 * per domain (outputs 1–2 source, 3–4 target).
 */
function lowerDomainBatchNorm(g: Graph, b: Builder, node: Node): void {
  const [x, scale, bias, sourceMean, sourceVar, targetMean, targetVar, nSource] = node.inputs;
  const [y, ...updated] = node.outputs;
  const epsilon = attrFloat(node, 'epsilon', 1e-5);
  const onnxMomentum = attrFloat(node, 'momentum', 0.9);
  const shape = inputShape(g, node, x);
  const rank = shape.length;
  const spatial = Array.from({ length: rank - 2 }, (_, k) => k + 2);
  const view = (v: string) => (spatial.length ? b.op('Unsqueeze', [v, b.ints(spatial)]) : v);
  const perRow = (op: string, v: string) => (spatial.length ? reduceOver(b, op, v, spatial) : op === 'ReduceSum' ? v : b.op('Mul', [v, v]));
  const shapeOfX = b.op('Shape', [x]);
  const rows = b.op('Range', [b.constant('int64', [0], []), b.op('Gather', [shapeOfX, b.constant('int64', [0], [])], { axis: 0 }), b.constant('int64', [1], [])]);
  const isSource = b.op('Cast', [b.op('Less', [rows, b.op('Squeeze', [nSource, b.ints([0])])])], { to: DataType.float });
  const d = b.op('Concat', [b.op('Unsqueeze', [isSource, b.ints([0])]), b.op('Unsqueeze', [b.op('Sub', [b.scalar(1), isSource]), b.ints([0])])], { axis: 0 });
  const spatialSize = spatial.every((k) => typeof shape[k] === 'number')
    ? b.scalar(spatial.reduce((p, k) => p * (shape[k] as number), 1))
    : b.op('Cast', [b.op('ReduceProd', [b.op('Slice', [shapeOfX, b.ints([2]), b.ints([rank])])], { keepdims: 0 })], { to: DataType.float });
  // Elements per domain and channel, [2, 1]; at least 1, so a domain without rows has zero statistics, not 0/0.
  const count = b.op('Max', [b.scalar(1), b.op('Mul', [b.op('ReduceSum', [d, b.ints([1])], { keepdims: 1 }), spatialSize])]);
  const byDomain = (perRowValues: string) => b.op('Div', [b.op('MatMul', [d, perRowValues]), count]);
  const toRows = (perDomain: string) => view(b.op('Gemm', [d, perDomain], { transA: 1 }));
  // Corrected two-pass statistics: the float32 mean of a first pass is off by about ε·|mean|, which is large
  // against the spread when a group's values are close (two rows of a 1×1 map) or far from zero; the mean of
  // the deviations from it recovers that error exactly enough. PyTorch's CPU BatchNorm gets there by summing
  // in double, which not every provider has (docs/da-parity.md).
  const rough = byDomain(perRow('ReduceSum', x));
  const deviation = b.op('Sub', [x, toRows(rough)]);
  const correction = byDomain(perRow('ReduceSum', deviation));
  const mean = b.op('Add', [rough, correction]);
  const centred = b.op('Sub', [deviation, toRows(correction)]);
  const variance = byDomain(perRow('ReduceSumSquare', centred));
  const invstd = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.scalar(epsilon)])])]);
  const normalised = b.op('Add', [b.op('Mul', [centred, toRows(b.op('Mul', [scale, invstd]))]), spatial.length ? b.op('Unsqueeze', [bias, b.ints([0, ...spatial])]) : bias]);
  b.opN('DomainBatchNormalizationTrain', [normalised, x, scale, bias, centred, invstd, d, count], {}, [y], MARKER_DOMAIN);
  g.extraOpsets.set(MARKER_DOMAIN, 1);
  const unbiased = unbiasedVariance(b, variance, count);
  const pick = (v: string, k: number) => b.op('Gather', [v, b.constant('int64', [k], [])], { axis: 0 });
  [[sourceMean, pick(mean, 0)], [sourceVar, pick(unbiased, 0)], [targetMean, pick(mean, 1)], [targetVar, pick(unbiased, 1)]].forEach(([run, batch], k) => {
    if (updated[k]) runningUpdate(b, onnxMomentum, run, batch, updated[k]);
  });
}

/** Replaces marker ops by their ai.onnx forward meaning and drops the marker opset. */
export function lowerMarkers(g: Graph): void {
  for (const node of g.nodes) {
    if (node.domain !== MARKER_DOMAIN) continue;
    if (node.op === 'GradientReversal') {
      node.op = 'Identity';
      node.inputs = [node.inputs[0]];
    } else if (node.op === 'BatchNormalizationTrain') {
      // Inference mode over the batch statistics; `centred` and `count` were only for the backward.
      node.op = 'BatchNormalization';
      node.inputs = node.inputs.slice(0, 5);
    } else if (node.op === 'DomainBatchNormalizationTrain') {
      // Input 0 is the plain-op result; the rest were for the backward.
      node.op = 'Identity';
      node.inputs = [node.inputs[0]];
    } else throw new Error(`internal: unknown marker ${node.op}`);
    node.domain = '';
  }
  g.extraOpsets.delete(MARKER_DOMAIN);
}
