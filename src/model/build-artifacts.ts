/**
 * `build-artifacts`: compiles the DANN model into ONNX Runtime's on-device-training layout —
 * training_model.onnx (forward + loss + backward), eval_model.onnx, optimizer_model.onnx, a
 * checkpoint whose names are the PyTorch state_dict keys, and manifest.json — written as one atomic
 * directory swap, so a reader never sees a mix of two builds.
 */
import { differentiate } from '../autodiff/grad.ts';
import { UserError } from '../errors.ts';
import { writeDirAtomic } from '../io/atomic.ts';
import { encodeSafetensors } from '../io/safetensors.ts';
import { type Tensor } from '../io/tensor.ts';
import { type Graph } from '../onnx/graph.ts';
import {
  type InputRole, type IoSpec, type Manifest, type ModelConfig, type ModelSpec, type OutputRole,
  MANIFEST_FORMAT, MANIFEST_VERSION,
} from '../onnx/manifest.ts';
import { encodeModel } from '../onnx/proto.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { stackBatchForSmallMaps } from '../onnx/stack-batch.ts';
import { assignParamGroups, SEED_DANN_GROUPS } from '../training/param-groups.ts';
import { buildDann } from './dann.ts';
import { type BufferEntry, type ParamEntry } from './net.ts';
import { initParameters, loadWeights, torchvisionWeightsFile } from './weights.ts';
import { buildAdamGraph } from './optimizer.ts';

export interface BuildOptions {
  config: ModelConfig;
  out: string;
  /** 'none' (seeded init), 'torchvision' (download once), or a .pth/.safetensors path. */
  weights: string;
  weightsCache: string;
  seed: number;
}

export interface BuiltArtifacts {
  manifest: Manifest;
  files: Map<string, Uint8Array | Uint8Array[]>;
}

const FIXED_INPUT_ROLES: Record<string, InputRole> = {
  images: 'image', labels: 'label', n_source: 'n_source', alpha: 'alpha', lambda_domain: 'lambda_domain',
  label_dropout_mask: 'dropout_mask', domain_dropout_mask: 'dropout_mask',
};
const FIXED_OUTPUT_ROLES: Record<string, OutputRole> = {
  loss: 'loss', regression_loss: 'regression_loss', domain_loss: 'domain_loss', prediction: 'prediction', domain_logit: 'domain_logit',
};

function describe(g: Graph, file: string, roles: { params: Set<string>; buffers: Set<string>; grads: Map<string, string>; updates: Map<string, string>; masks: Map<string, { p: number; rows: 'source' | 'all' }> }): ModelSpec {
  const inputs: IoSpec<InputRole>[] = g.inputs.map((v) => ({
    name: v.name, dtype: v.dtype, shape: v.shape ?? [],
    role: roles.params.has(v.name) ? 'param' : roles.buffers.has(v.name) ? 'buffer' : FIXED_INPUT_ROLES[v.name] ?? 'hyperparameter',
    ...(roles.masks.has(v.name) ? { dropout: roles.masks.get(v.name) } : {}),
  }));
  const outputs: IoSpec<OutputRole>[] = g.outputs.map((v) => {
    const info = g.info(v.name) ?? v;
    const of = roles.grads.get(v.name) ?? roles.updates.get(v.name);
    const role: OutputRole = roles.grads.has(v.name) ? 'grad' : roles.updates.has(v.name) ? 'buffer_update' : FIXED_OUTPUT_ROLES[v.name];
    if (!role) throw new Error(`internal: output ${v.name} has no role`);
    return { name: v.name, dtype: info.dtype, shape: info.shape ?? [], role, ...(of ? { of } : {}) };
  });
  return { file, inputs, outputs };
}

async function initialWeights(opts: BuildOptions, params: ParamEntry[], buffers: BufferEntry[]) {
  if (opts.weights === 'none') return { values: initParameters(params, opts.seed), buffers: new Map<string, Float32Array>(), source: `none (seeded init, seed ${opts.seed})` };
  const file = opts.weights === 'torchvision' ? await torchvisionWeightsFile(opts.config.backbone, opts.weightsCache) : opts.weights;
  return loadWeights(file, opts.config.backbone, params, new Map(buffers.filter((b) => b.dtype === 'float').map((b) => [b.name, b.shape])), opts.seed);
}

export async function compileArtifacts(opts: BuildOptions): Promise<BuiltArtifacts> {
  const { config } = opts;
  const train = buildDann(config, 'train');
  const { params, buffers } = train.net;
  const paramNames = params.map((p) => p.name);
  const updates = new Map(buffers.filter((b) => b.updatedBy).map((b) => [b.updatedBy!, b.name]));
  train.graph.outputs.push(
    ...['loss', 'regression_loss', 'domain_loss'].map((name) => ({ name, dtype: 'float' as const, shape: [] })),
    ...[...updates.keys()].map((name) => ({ name, dtype: 'float' as const })),
  );
  const gradOf = differentiate(train.graph, { loss: 'loss', wrt: paramNames });
  stackBatchForSmallMaps(train.graph);
  const grads = new Map([...gradOf].map(([p, g]) => [g, p]));

  const evalModel = buildDann(config, 'eval');
  evalModel.graph.outputs.push(...['prediction', 'domain_logit', 'loss', 'regression_loss', 'domain_loss'].map((name) => ({ name, dtype: 'float' as const })));
  stackBatchForSmallMaps(evalModel.graph);

  const adam = buildAdamGraph();
  inferShapes(adam);

  const groups = assignParamGroups([...paramNames, ...buffers.map((b) => b.name)], SEED_DANN_GROUPS);
  const shapeOf = new Map(params.map((p) => [p.name, p.shape]));
  const roles = {
    params: new Set(paramNames), buffers: new Set(buffers.map((b) => b.name)), grads, updates,
    masks: new Map(train.masks.map((m) => [m.name, { p: m.p, rows: m.rows }])),
  };
  const optimizerSpec: ModelSpec = {
    file: 'optimizer_model.onnx',
    inputs: adam.inputs.map((v) => ({
      name: v.name, dtype: v.dtype, shape: v.shape ?? [],
      role: v.name === 'param' || v.name === 'grad' ? v.name : v.name.startsWith('exp_avg') ? 'optimizer_state' : 'hyperparameter',
    })),
    outputs: adam.outputs.map((v) => ({ name: v.name, dtype: v.dtype, shape: v.shape ?? [], role: v.name === 'param.out' ? 'param' : 'optimizer_state' })),
  };

  const weights = await initialWeights(opts, params, buffers);
  const state = new Map<string, Tensor>();
  for (const name of train.net.stateOrder) {
    const p = shapeOf.get(name);
    if (p) { state.set(name, { dtype: 'F32', shape: p, data: weights.values.get(name)! }); continue; }
    const buf = buffers.find((b) => b.name === name)!;
    if (buf.dtype === 'int64') { state.set(name, { dtype: 'I64', shape: [], data: new BigInt64Array(1) }); continue; }
    // Target running statistics start as the source ones (pretrained statistics when weights were loaded).
    const loaded = weights.buffers.get(name) ?? weights.buffers.get(name.replace('.target_running_', '.running_'));
    state.set(name, { dtype: 'F32', shape: buf.shape, data: loaded ?? new Float32Array(buf.shape[0]).fill(buf.init === 'ones' ? 1 : 0) });
  }

  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    formatVersion: MANIFEST_VERSION,
    createdBy: 'ort-dann build-artifacts 0.1.0',
    config,
    groups: groups.groups.map((g) => g.name),
    parameters: groups.params.map((p) => ({ ...p, shape: shapeOf.get(p.name)! })),
    buffers: buffers.map((b) => ({ name: b.name, shape: b.shape, dtype: b.dtype })),
    models: {
      training: describe(train.graph, 'training_model.onnx', roles),
      eval: describe(evalModel.graph, 'eval_model.onnx', roles),
      optimizer: optimizerSpec,
    },
    checkpoint: 'checkpoint.safetensors',
    weights: weights.source,
    opset: train.graph.opset,
    batchNormForward: 'ops',
  };
  const metadata = { format: 'pt', 'ort-dann.kind': 'model', 'ort-dann.config': JSON.stringify(config) };
  const files = new Map<string, Uint8Array | Uint8Array[]>([
    ['training_model.onnx', encodeModel(train.graph.toModel({ docString: `${config.name} training step: forward, losses and backward` }))],
    ['eval_model.onnx', encodeModel(evalModel.graph.toModel({ docString: `${config.name} evaluation` }))],
    ['optimizer_model.onnx', encodeModel(adam.toModel({ docString: 'fastai Adam step over one parameter segment' }))],
    ['checkpoint.safetensors', encodeSafetensors(state, metadata)],
    ['manifest.json', new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`)],
  ]);
  return { manifest, files };
}

export async function buildArtifacts(opts: BuildOptions): Promise<Manifest> {
  if (!opts.out) throw new UserError('--out: give a directory for the artifacts');
  const { manifest, files } = await compileArtifacts(opts);
  await writeDirAtomic(opts.out, files);
  return manifest;
}
