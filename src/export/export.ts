/**
 * The inference model: the DANN eval graph with the checkpoint baked in as initializers and
 * everything a deployment does not run taken out. What remains reads `images` [N, 3, S, S] and
 * writes `prediction` [N, K] (with `withDomain` also `features` [N, F], the flattened input of both
 * heads, and `domain_logit` [N, 1]).
 *
 * - The loss branch and its inputs (n_source, labels, lambda_domain) are pruned; the eval graph has
 *   no dropout and no gradient-reversal marker to begin with, and the result is checked for both.
 * - Artifacts with per-domain BatchNorm statistics keep one domain's running statistics, the target's
 *   unless told otherwise: the model is deployed on the target domain (docs/domain-batchnorm.md).
 * - Every BatchNormalization is folded into the Conv before it: W' = W·γ/√(σ²+ε),
 *   b' = (b − μ)·γ/√(σ²+ε) + β, computed in float64 and stored as float32. The folded tensors keep
 *   the conv's state_dict names (a conv without bias gains `<conv>.bias`).
 * - A run trained on standardized targets (src/training/standardize.ts) has its inverse transform
 *   folded into the last Linear of the label head: W'[k] = W[k]·std[k], b'[k] = b[k]·std[k] + mean[k]
 *   (float64, stored as float32), so `prediction` is in the labels' original units.
 * - Opset 17, IR version 8: loaded by onnxruntime-node, onnxruntime-web and Python onnxruntime alike.
 */
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { toFloat32, type Tensor } from '../io/tensor.ts';
import { attrFloat, attrInt, Graph, type Node } from '../onnx/graph.ts';
import { type Domain, type Manifest, type ModelConfig } from '../onnx/manifest.ts';
import { encodeModel } from '../onnx/proto.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { buildDann } from '../model/dann.ts';
import { type Normalization } from '../data/normalization.ts';
import { type TargetScaling } from '../training/standardize.ts';
import { findCheckpointFile } from './checkpoint.ts';
import { checkFiniteOutputs, checkFiniteWeights } from './probe.ts';
import { INPUT_NAME, ortDannVersion, sourceCommit, toMetadataProps, type GraphOutput, type InferenceMetadata } from './metadata.ts';

export const EXPORT_OPSET = 17;
export const EXPORT_IR_VERSION = 8;

export interface ExportMetadataInput {
  normalization: Normalization;
  runId?: string;
  /** Defaults to `git rev-parse HEAD` of this checkout, when there is one. */
  sourceCommit?: string;
  /** Defaults to now. */
  created?: Date;
}

export interface ExportOptions {
  manifest: Manifest;
  /** The weights by state_dict key, or a .safetensors file or run directory holding them (see findCheckpointFile). */
  checkpoint: Map<string, Tensor> | string;
  out: string;
  withDomain?: boolean;
  metadata: ExportMetadataInput;
  /** How errors name the weights when `checkpoint` is a Map (default 'the checkpoint'). */
  where?: string;
  /** The fix named when the weights or the probe outputs are NaN/Inf (nothing is written then). */
  nonFiniteFix?: string;
  /** The run's target standardization, undone inside the model (regression trained on standardized labels). */
  targetScaling?: TargetScaling;
  /** Per-domain BatchNorm statistics: the domain whose statistics the model keeps (default target, where it is deployed). */
  deployDomain?: Domain;
}

export interface ExportResult {
  out: string;
  bytes: number;
  metadata: InferenceMetadata;
  /** Node count by op type, e.g. { Conv: 21, Relu: 17, … }. */
  ops: Record<string, number>;
  foldedBatchNorms: number;
}

/**
 * Writes the inference model to `opts.out` atomically (a reader never sees a partial file), after
 * checking its weights and its outputs on a probe batch are finite (see probe.ts).
 */
export async function exportInferenceModel(opts: ExportOptions): Promise<ExportResult> {
  const { config } = opts.manifest;
  const file = typeof opts.checkpoint === 'string' ? findCheckpointFile(opts.checkpoint) : undefined;
  const weights = file ? (await readSafetensors(file)).tensors : opts.checkpoint as Map<string, Tensor>;
  const where = file ?? opts.where ?? 'the checkpoint';
  const { graph, foldedBatchNorms } = buildInferenceGraph(config, weights, { withDomain: opts.withDomain, where, targetScaling: opts.targetScaling, deployDomain: opts.deployDomain });
  const metadata: InferenceMetadata = {
    modelName: config.name,
    backbone: config.backbone,
    task: config.task,
    imageSize: config.imageSize,
    channels: config.channels,
    normalization: opts.metadata.normalization,
    outputNames: config.outputs,
    outputs: graph.outputs.map((o) => o.name as GraphOutput),
    runId: opts.metadata.runId,
    sourceCommit: opts.metadata.sourceCommit ?? sourceCommit(),
    ortDannVersion: ortDannVersion(),
    created: (opts.metadata.created ?? new Date()).toISOString(),
  };
  const task = config.task === 'classification' ? `logits over ${config.outputs.length} classes` : `${config.outputs.join(', ')}`;
  const bytes = encodeModel(graph.toModel({
    irVersion: EXPORT_IR_VERSION,
    metadata: toMetadataProps(metadata),
    docString: `${config.name} (${config.backbone}, ${config.imageSize} px) inference: images -> prediction (${task})`,
  }));
  const fix = opts.nonFiniteFix ?? 'export an earlier checkpoint, or retrain with a lower --lr';
  checkFiniteWeights([...graph.initializers].filter(([, t]) => t.dtype === 'float').map(([name, t]) => [name, t.data as Float32Array]), where, fix);
  await checkFiniteOutputs(bytes, config.imageSize, config.channels, where, fix);
  await writeFileAtomic(opts.out, bytes);
  const ops: Record<string, number> = {};
  for (const n of graph.nodes) ops[n.op] = (ops[n.op] ?? 0) + 1;
  return { out: opts.out, bytes: bytes.length, metadata, ops, foldedBatchNorms };
}

/**
 * The inference graph for `config` with `weights` (state_dict key → tensor; extra keys such as
 * num_batches_tracked or optimizer state are ignored). `where` names the weights in errors.
 */
export function buildInferenceGraph(config: ModelConfig, weights: Map<string, Tensor>, opts: { withDomain?: boolean; where?: string; targetScaling?: TargetScaling; deployDomain?: Domain } = {}): { graph: Graph; foldedBatchNorms: number } {
  const where = opts.where ?? 'the checkpoint';
  const { graph: g, net } = buildDann(config, 'eval', { deploy: opts.deployDomain ?? 'target' });
  g.name = `${config.name}-inference`;
  g.opset = EXPORT_OPSET;
  const expected = [...net.params, ...net.buffers.filter((b) => b.dtype === 'float')];
  for (const { name, shape } of expected) {
    const t = weights.get(name);
    if (!t) throw new UserError(`${where} has no tensor ${name}; it was not saved from a ${config.backbone} ${config.name} model (check --checkpoint and --artifacts)`);
    if (t.shape.length !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new UserError(`${where}: ${name} has shape [${t.shape}], the model needs [${shape}]; the checkpoint and the manifest are from different models (check --checkpoint and --artifacts)`);
    }
    g.initializers.set(name, { dtype: 'float', dims: shape, data: toFloat32(t) });
  }
  const parameterNames = new Set(expected.map((e) => e.name));
  g.inputs = g.inputs.filter((v) => !parameterNames.has(v.name));

  // Both heads flatten the feature map: the label head's Flatten output becomes `features`.
  const labelGemm = g.nodes.find((n) => n.op === 'Gemm' && n.inputs[1] === 'label_predictor.regressor.1.weight');
  if (!labelGemm) throw new Error('internal: the eval graph has no label head');
  renameValue(g, labelGemm.inputs[0], 'features');
  const outputs: GraphOutput[] = opts.withDomain ? ['prediction', 'features', 'domain_logit'] : ['prediction'];
  g.outputs = outputs.map((name) => ({ name, dtype: 'float' }));
  g.prune();
  g.inputs = g.inputs.filter((v) => g.nodes.some((n) => n.inputs.includes(v.name)));
  bypassIdentities(g);
  mergeDuplicateNodes(g);
  const foldedBatchNorms = foldBatchNorms(g);
  if (opts.targetScaling) foldTargetScaling(g, opts.targetScaling);
  g.prune();

  const left = g.nodes.filter((n) => n.domain !== '' || ['BatchNormalization', 'Dropout', 'Identity'].includes(n.op));
  if (left.length > 0) throw new Error(`internal: the inference graph still holds ${left.map((n) => `${n.domain}:${n.op}`).join(', ')}`);
  if (g.inputs.length !== 1 || g.inputs[0].name !== INPUT_NAME) throw new Error(`internal: inference inputs are ${g.inputs.map((v) => v.name).join(', ')}`);
  inferShapes(g);
  return { graph: g, foldedBatchNorms };
}

function renameValue(g: Graph, from: string, to: string): void {
  for (const n of g.nodes) {
    n.inputs = n.inputs.map((v) => (v === from ? to : v));
    n.outputs = n.outputs.map((v) => (v === from ? to : v));
  }
  g.reserve(to);
}

/** Removes Identity nodes: the producer writes a graph output directly, other readers read the source. */
function bypassIdentities(g: Graph): void {
  const outputNames = new Set(g.outputs.map((o) => o.name));
  const graphInputs = new Set([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  for (const n of g.nodes.filter((m) => m.op === 'Identity')) {
    const [src] = n.inputs;
    const [dst] = n.outputs;
    if (!outputNames.has(dst)) renameValue(g, dst, src);
    else if (!graphInputs.has(src) && !outputNames.has(src)) renameValue(g, src, dst);
    else continue;
    g.nodes.splice(g.nodes.indexOf(n), 1);
  }
}

/** Drops nodes that repeat an earlier node's op, inputs and attributes (e.g. the heads' two Flattens). */
function mergeDuplicateNodes(g: Graph): void {
  const outputNames = new Set(g.outputs.map((o) => o.name));
  const seen = new Map<string, Node>();
  const rename = new Map<string, string>();
  g.nodes = g.nodes.filter((n) => {
    n.inputs = n.inputs.map((v) => rename.get(v) ?? v);
    const key = JSON.stringify([n.op, n.domain, n.inputs, n.attrs]);
    const first = seen.get(key);
    if (!first || n.outputs.some((o) => outputNames.has(o))) {
      seen.set(key, first ?? n);
      return true;
    }
    n.outputs.forEach((o, k) => rename.set(o, first.outputs[k]));
    return false;
  });
}

/** Undoes the target standardization in the Gemm that writes `prediction` (see the module comment). */
function foldTargetScaling(g: Graph, s: TargetScaling): void {
  const head = g.nodes.find((n) => n.outputs[0] === 'prediction');
  // Gemm(x, W, b) with W stored [K, in] (transB = 1) and unit alpha/beta: the shape Net.linear builds.
  const plain = head && head.op === 'Gemm' && head.inputs.length === 3 && attrInt(head, 'transB', 0) === 1 && attrInt(head, 'transA', 0) === 0
    && attrFloat(head, 'alpha', 1) === 1 && attrFloat(head, 'beta', 1) === 1;
  if (!head || !plain) {
    throw new Error('internal: the label head does not end in a Gemm writing prediction');
  }
  const w = g.initializers.get(head.inputs[1]);
  const b = g.initializers.get(head.inputs[2]);
  const K = s.mean.length;
  if (!w || !b || w.dims[0] !== K || b.dims[0] !== K) throw new Error(`internal: the label head's Gemm does not have ${K} outputs`);
  const W = w.data as Float32Array;
  const B = b.data as Float32Array;
  const inF = W.length / K;
  const newW = new Float32Array(W.length);
  const newB = new Float32Array(K);
  for (let k = 0; k < K; k++) {
    for (let j = k * inF; j < (k + 1) * inF; j++) newW[j] = W[j] * s.std[k];
    newB[k] = B[k] * s.std[k] + s.mean[k];
  }
  g.initializers.set(head.inputs[1], { ...w, data: newW });
  g.initializers.set(head.inputs[2], { ...b, data: newB });
}

/** Folds each BatchNormalization into the Conv feeding it (see the module comment); returns the count. */
function foldBatchNorms(g: Graph): number {
  const producers = g.producers();
  const consumers = g.consumers();
  const outputNames = new Set(g.outputs.map((o) => o.name));
  const tensor = (name: string) => {
    const t = g.initializers.get(name);
    if (!t || t.dtype !== 'float') throw new Error(`internal: ${name} is not a float initializer`);
    return t.data as Float32Array;
  };
  let folded = 0;
  for (const bn of g.nodes.filter((n) => n.op === 'BatchNormalization')) {
    const conv = producers.get(bn.inputs[0]);
    if (!conv || conv.op !== 'Conv' || consumers.get(bn.inputs[0])!.length !== 1 || outputNames.has(bn.inputs[0])) continue;
    const weightName = conv.inputs[1];
    if (consumers.get(weightName)!.length !== 1 || (conv.inputs[2] && consumers.get(conv.inputs[2])!.length !== 1)) continue;
    const w = tensor(weightName);
    const [gamma, beta, mean, variance] = bn.inputs.slice(1).map(tensor);
    const bias = conv.inputs[2] ? tensor(conv.inputs[2]) : new Float32Array(gamma.length);
    // ONNX stores epsilon as float32, and ORT adds it to the float32 variance.
    const eps = Math.fround(attrFloat(bn, 'epsilon', 1e-5));
    const perChannel = w.length / gamma.length;
    const newW = new Float32Array(w.length);
    const newB = new Float32Array(gamma.length);
    for (let o = 0; o < gamma.length; o++) {
      const scale = gamma[o] / Math.sqrt(variance[o] + eps);
      for (let k = o * perChannel; k < (o + 1) * perChannel; k++) newW[k] = w[k] * scale;
      newB[o] = (bias[o] - mean[o]) * scale + beta[o];
    }
    const named = weightName.replace(/\.weight$/, '.bias');
    const biasName = conv.inputs[2] || (named !== weightName && !g.initializers.has(named) ? named : g.fresh(`${weightName}.bias`));
    g.initializers.set(weightName, { dtype: 'float', dims: g.initializers.get(weightName)!.dims, data: newW });
    g.initializers.set(biasName, { dtype: 'float', dims: [gamma.length], data: newB });
    conv.inputs[2] = biasName;
    conv.outputs[0] = bn.outputs[0];
    g.nodes.splice(g.nodes.indexOf(bn), 1);
    folded++;
  }
  return folded;
}
