/**
 * manifest.json: the one description the runtime reads of the training artifacts — every model's
 * inputs and outputs with a role, dtype and shape; parameters and their groups; the model config.
 * The runtime never guesses a name.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../errors.ts';
import { type Dim } from './graph.ts';
import { type DType } from './proto.ts';

export const MANIFEST_FORMAT = 'ort-dann-artifacts';
export const MANIFEST_VERSION = 1;

export type InputRole =
  | 'image' | 'label' | 'n_source' | 'alpha' | 'lambda_domain' | 'dropout_mask' | 'param' | 'buffer'
  | 'optimizer_state' | 'hyperparameter' | 'grad';
export type OutputRole =
  | 'loss' | 'regression_loss' | 'domain_loss' | 'grad' | 'buffer_update' | 'prediction' | 'domain_logit' | 'optimizer_state' | 'param';

export interface IoSpec<R extends string> {
  name: string;
  role: R;
  dtype: DType;
  shape: Dim[];
  /** For grads and buffer updates: the parameter or buffer they belong to. */
  of?: string;
  /** For dropout masks: drop probability and which rows of the combined batch it covers. */
  dropout?: { p: number; rows: 'source' | 'all' };
}

export interface ModelSpec {
  file: string;
  inputs: IoSpec<InputRole>[];
  outputs: IoSpec<OutputRole>[];
}

export interface ModelConfig {
  name: string;
  backbone: 'resnet18' | 'resnet34' | 'mobilenet_v3_small' | 'vgg11_bn';
  imageSize: number;
  channels: 3;
  task: 'regression' | 'classification';
  /** Regression: one name per output. Classification: the class names. */
  outputs: string[];
  dropout: number;
  featureDim: number;
  /**
   * BatchNorm statistics in training: 'combined' normalises the source and target rows of a batch
   * together (the seed); 'per-domain' normalises each domain's rows with their own statistics and
   * keeps target running statistics beside the source ones (docs/domain-batchnorm.md). Absent: combined.
   */
  batchNormStats?: BatchNormStats;
}

export type BatchNormStats = 'combined' | 'per-domain';
/** The two domains of a DANN batch: labelled source rows first, then unlabelled target rows. */
export type Domain = 'source' | 'target';
export const BATCH_NORM_STATS: BatchNormStats[] = ['combined', 'per-domain'];

export interface ParamSpec {
  name: string;
  shape: number[];
  group: number;
  isBatchNorm: boolean;
  isBias: boolean;
  decay: boolean;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  formatVersion: number;
  createdBy: string;
  config: ModelConfig;
  groups: string[];
  parameters: ParamSpec[];
  /** BatchNorm running statistics (float) and counters (int64 num_batches_tracked). */
  buffers: { name: string; shape: number[]; dtype: DType }[];
  models: { training: ModelSpec; eval: ModelSpec; optimizer: ModelSpec };
  checkpoint: string;
  /** Where the initial weights came from (none, a file, torchvision). */
  weights: string;
  opset: number;
  /** 'ops': batch statistics from plain ops (any provider); 'fused': ONNX's training-mode kernel, which earlier builds used (unsafe, see docs/autodiff.md; no WebGPU kernel). */
  batchNormForward?: 'fused' | 'ops';
}

export function readManifest(dir: string): Manifest {
  const path = join(dir, 'manifest.json');
  // The hint names the installed CLI (`npm run` works only inside this repository).
  const rebuild = `rebuild the artifacts with \`ort-dann build-artifacts --out ${dir}\``;
  if (!existsSync(dir)) throw new UserError(`--artifacts ${dir}: no such folder; check the path, or build artifacts there with \`ort-dann build-artifacts --out ${dir}\``);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new UserError(`${path} is missing; ${rebuild}`);
  }
  let m: Manifest;
  try {
    m = JSON.parse(text);
  } catch {
    throw new UserError(`${path} is not valid JSON; ${rebuild}`);
  }
  if (m.format !== MANIFEST_FORMAT) throw new UserError(`${path} is not an ort-dann artifacts manifest; ${rebuild}`);
  if (m.formatVersion !== MANIFEST_VERSION) throw new UserError(`${path} has format version ${m.formatVersion}, this ort-dann reads version ${MANIFEST_VERSION}; ${rebuild}`);
  // Data are prepared at config.imageSize; a hand-edited value would reach ONNX Runtime (or an allocation) as a shape error.
  const images = m.models?.training?.inputs?.find((i) => i.name === 'images');
  const side = images?.shape?.[3];
  if (typeof side === 'number' && m.config?.imageSize !== side) {
    throw new UserError(`${path}: config.imageSize is ${m.config?.imageSize}, but ${m.models.training.file} takes ${side}×${side} images (the manifest was edited or damaged); ${rebuild}`);
  }
  return m;
}
