/**
 * What an exported inference model says about itself in ONNX `metadata_props`, so a deployer needs
 * nothing but the .onnx file: the input geometry and preprocessing, what the outputs mean, and where
 * the model came from. Values are plain strings (JSON where structured), readable from Python with
 * `InferenceSession(...).get_modelmeta().custom_metadata_map`, from our proto reader, and from the
 * browser example's protobuf scan.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseNormalization, type Normalization } from '../data/normalization.ts';
import { UserError } from '../errors.ts';
import { type ModelConfig } from '../onnx/manifest.ts';
import { BACKBONES } from '../model/config.ts';
import { type ModelProto } from '../onnx/proto.ts';

export const METADATA_VERSION = 1;
/** The one graph input of every exported model: float32 [N, channels, image_size, image_size]. */
export const INPUT_NAME = 'images';

export type GraphOutput = 'prediction' | 'features' | 'domain_logit';

/** How decode.ts turns a file into [0, 1] RGB before `normalization` (see src/data/decode.ts). */
export const PREPROCESSING = {
  color: 'RGB (gray replicated, alpha dropped)',
  resize: 'stretch to image_size x image_size, bilinear (libvips linear)',
  scale: 'x/255 for 8-bit, x/65535 for 16-bit',
  layout: 'NCHW float32',
};

export interface InferenceMetadata {
  modelName: string;
  backbone: ModelConfig['backbone'];
  task: ModelConfig['task'];
  imageSize: number;
  channels: number;
  normalization: Normalization;
  /** Column names of `prediction`: regression targets, or class names (then `prediction` holds logits). */
  outputNames: string[];
  /** The model's graph outputs, `prediction` first. */
  outputs: GraphOutput[];
  runId?: string;
  sourceCommit?: string;
  ortDannVersion: string;
  /** ISO 8601. */
  created: string;
}

export function toMetadataProps(m: InferenceMetadata): Record<string, string> {
  const props: Record<string, string> = {
    'ort_dann.metadata_version': String(METADATA_VERSION),
    model_name: m.modelName,
    backbone: m.backbone,
    task: m.task,
    image_size: String(m.imageSize),
    channels: String(m.channels),
    input_name: INPUT_NAME,
    normalization: JSON.stringify(m.normalization),
    preprocessing: JSON.stringify(PREPROCESSING),
    output_names: JSON.stringify(m.outputNames),
    outputs: JSON.stringify(m.outputs),
    prediction: m.task === 'classification' ? 'logits (softmax gives class probabilities)' : 'values',
    ort_dann_version: m.ortDannVersion,
    created: m.created,
  };
  if (m.runId) props.run_id = m.runId;
  if (m.sourceCommit) props.source_commit = m.sourceCommit;
  return props;
}

/** Reads and checks the metadata of an exported model; `file` names it in errors. */
export function readInferenceMetadata(model: ModelProto, file: string): InferenceMetadata {
  const props = new Map((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? '']));
  const version = props.get('ort_dann.metadata_version');
  if (version === undefined) {
    throw new UserError(`${file}: an ONNX model without ort-dann metadata (image size, normalization, output names); give --model the model.onnx that \`ort-dann train\` or \`ort-dann export --checkpoint RUN_DIR\` wrote (RUN_DIR/model.onnx)`);
  }
  if (Number(version) !== METADATA_VERSION) {
    throw new UserError(`${file}: ort-dann metadata version ${version}, this ort-dann reads version ${METADATA_VERSION}; re-export it with this version's \`ort-dann export\``);
  }
  const bad = (key: string, want: string): never => {
    throw new UserError(`${file}: metadata ${key} is ${JSON.stringify(props.get(key) ?? null)}, expected ${want}; re-export the model with \`ort-dann export\``);
  };
  const json = (key: string): unknown => {
    try {
      return JSON.parse(props.get(key) ?? '');
    } catch {
      return bad(key, 'JSON');
    }
  };
  const positiveInt = (key: string): number => {
    const v = Number(props.get(key));
    return Number.isInteger(v) && v > 0 ? v : bad(key, 'a positive integer');
  };
  const stringList = (key: string): string[] => {
    const v = json(key);
    return Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string') ? v : bad(key, 'a JSON list of names');
  };
  const task = props.get('task');
  if (task !== 'regression' && task !== 'classification') bad('task', '"regression" or "classification"');
  const backbone = props.get('backbone');
  if (!BACKBONES.includes(backbone as ModelConfig['backbone'])) bad('backbone', BACKBONES.map((b) => `"${b}"`).join(' or '));
  const outputs = stringList('outputs');
  if (outputs[0] !== 'prediction' || !outputs.every((o) => o === 'prediction' || o === 'features' || o === 'domain_logit')) {
    bad('outputs', 'a list starting with "prediction" (then "features", "domain_logit")');
  }
  let normalization: Normalization;
  try {
    normalization = parseNormalization(json('normalization'), `${file}: metadata normalization`);
  } catch (e) {
    throw new UserError(`${(e as Error).message}; re-export the model with \`ort-dann export\``);
  }
  return {
    modelName: props.get('model_name') ?? '',
    backbone: backbone as ModelConfig['backbone'],
    task: task as ModelConfig['task'],
    imageSize: positiveInt('image_size'),
    channels: positiveInt('channels'),
    normalization,
    outputNames: stringList('output_names'),
    outputs: outputs as GraphOutput[],
    runId: props.get('run_id'),
    sourceCommit: props.get('source_commit'),
    ortDannVersion: props.get('ort_dann_version') ?? '',
    created: props.get('created') ?? '',
  };
}

const PACKAGE_ROOT = join(import.meta.dirname, '..', '..');

export function ortDannVersion(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The commit of this ort-dann checkout, or undefined outside a git checkout (e.g. an npm install). */
export function sourceCommit(): string | undefined {
  const r = spawnSync('git', ['-C', PACKAGE_ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8', timeout: 5000 });
  const sha = r.status === 0 ? r.stdout.trim() : '';
  return /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
}
