import { UserError } from '../errors.ts';

/**
 * How [0,1] pixel values are mapped before they reach the model. It is a plain JSON-able object so a
 * training run can record it in its artifacts and export/predict can apply exactly the same mapping.
 */
export type Normalization =
  | { kind: 'none' }
  | { kind: 'imagenet'; mean: [number, number, number]; std: [number, number, number] };

export const NO_NORMALIZATION: Normalization = { kind: 'none' };

/** torchvision's ImageNet statistics (RGB order), as used with pretrained ResNets. */
export const IMAGENET_NORMALIZATION: Normalization = {
  kind: 'imagenet',
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
};

export const NORMALIZATION_NAMES = ['none', 'imagenet'] as const;

/** The setting named by a `--normalization` flag value. */
export function normalizationFromName(name: string): Normalization {
  if (name === 'none') return NO_NORMALIZATION;
  if (name === 'imagenet') return IMAGENET_NORMALIZATION;
  throw new UserError(`unknown normalization "${name}"; use one of: ${NORMALIZATION_NAMES.join(', ')}`);
}

/** Checks a recorded setting (e.g. read back from an artifact's JSON) and returns it typed. */
export function parseNormalization(value: unknown, where: string): Normalization {
  const v = value as { kind?: unknown; mean?: unknown; std?: unknown } | null;
  if (v && v.kind === 'none') return NO_NORMALIZATION;
  const triple = (x: unknown, positive: boolean) =>
    Array.isArray(x) && x.length === 3 && x.every((n) => typeof n === 'number' && Number.isFinite(n) && (!positive || n > 0));
  if (v && v.kind === 'imagenet' && triple(v.mean, false) && triple(v.std, true)) {
    return { kind: 'imagenet', mean: [...(v.mean as number[])] as [number, number, number], std: [...(v.std as number[])] as [number, number, number] };
  }
  throw new UserError(`${where}: normalization must be {"kind":"none"} or {"kind":"imagenet","mean":[3 numbers],"std":[3 positive numbers]}, got ${JSON.stringify(value)}`);
}

/**
 * Applies the setting in place to `count` CHW images of `size`×`size` stored back to back from
 * `offset`. Every loader and the predict path go through this one function.
 */
export function normalizeInPlace(data: Float32Array, size: number, normalization: Normalization, offset = 0, count = 1): void {
  if (normalization.kind === 'none') return;
  const plane = size * size;
  for (let n = 0; n < count; n++) {
    for (let c = 0; c < 3; c++) {
      const mean = normalization.mean[c];
      const inv = 1 / normalization.std[c];
      const start = offset + (n * 3 + c) * plane;
      for (let i = start; i < start + plane; i++) data[i] = (data[i] - mean) * inv;
    }
  }
}
