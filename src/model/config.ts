/**
 * Model configs (models/*.json) and the geometry checks that depend on them: the feature map after
 * backbone (stride 32), AvgPool2d(2) and the 4×4/2 extra conv must not vanish.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.ts';
import { BATCH_NORM_STATS, type ModelConfig } from '../onnx/manifest.ts';
import { BACKBONE_CHANNELS } from './dann.ts';

export const DEFAULT_OUTPUTS = ['num_particles', 'planar_dist', 'depth_dist'];
export const BACKBONES: ModelConfig['backbone'][] = ['resnet18', 'resnet34', 'mobilenet_v3_small', 'vgg11_bn'];

/** Side of the feature map after the extra conv, or 0 when the image is too small. */
export function featureMapSide(imageSize: number): number {
  const conv = (h: number, k: number, s: number, p: number) => Math.floor((h + 2 * p - k) / s) + 1;
  let h = conv(imageSize, 7, 2, 3); // stem
  h = conv(h, 3, 2, 1); // max-pool
  for (let stage = 0; stage < 3; stage++) h = conv(h, 3, 2, 1); // layer2..4 stride 2
  h = Math.floor(h / 2); // AvgPool2d(2)
  return h < 1 ? 0 : Math.max(0, conv(h, 4, 2, 1));
}

export function makeConfig(partial: Partial<ModelConfig> & { imageSize: number }): ModelConfig {
  const imageSize = partial.imageSize;
  if (!Number.isInteger(imageSize) || imageSize < 1) throw new UserError(`--image-size ${imageSize}: must be a positive integer such as 128 or 256`);
  const side = featureMapSide(imageSize);
  if (side < 1) {
    let smallest = imageSize;
    while (featureMapSide(smallest) < 1) smallest++;
    throw new UserError(`--image-size ${imageSize}: the feature map vanishes before the heads (backbone stride 32, then AvgPool2d(2) and a 4×4/2 conv); use at least ${smallest} px, e.g. 128 or 256`);
  }
  const outputs = partial.outputs ?? DEFAULT_OUTPUTS;
  const task = partial.task ?? 'regression';
  if (outputs.length === 0) throw new UserError('--outputs: name at least one output');
  if (new Set(outputs).size !== outputs.length) throw new UserError(`--outputs: names must be distinct (got ${outputs.join(',')})`);
  if (task === 'classification' && outputs.length < 2) throw new UserError('--outputs: classification needs at least two class names');
  const dropout = partial.dropout ?? 0.3;
  if (!(dropout >= 0 && dropout < 1)) throw new UserError(`dropout ${dropout}: must be in [0, 1)`);
  const backbone = partial.backbone ?? 'resnet34';
  if (!BACKBONES.includes(backbone)) throw new UserError(`--backbone ${backbone}: choose ${BACKBONES.join(', ')}`);
  const batchNormStats = partial.batchNormStats ?? 'per-domain';
  if (!BATCH_NORM_STATS.includes(batchNormStats)) throw new UserError(`batchNormStats ${batchNormStats}: choose ${BATCH_NORM_STATS.join(' or ')}`);
  return {
    name: partial.name ?? `${backbone}-dann`,
    backbone, imageSize, channels: 3, task, outputs, dropout,
    featureDim: BACKBONE_CHANNELS[backbone] * side * side,
    batchNormStats,
  };
}

export function loadConfigFile(path: string): Partial<ModelConfig> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UserError(`--config ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'not valid JSON'}; see models/resnet34-dann.json for the format`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UserError(`--config ${path}: must hold a JSON object like models/resnet34-dann.json`);
  const known = new Set(['name', 'backbone', 'imageSize', 'task', 'outputs', 'dropout', 'batchNormStats']);
  const unknown = Object.keys(parsed).filter((k) => !known.has(k) && !k.startsWith('$'));
  if (unknown.length > 0) throw new UserError(`--config ${path}: unknown key ${unknown[0]}; allowed keys are ${[...known].join(', ')}`);
  return parsed as Partial<ModelConfig>;
}
