/**
 * Standardized regression targets. Raw labels of very different scales (num_particles ~2–30,
 * distances ~0–1) make the seed's plain MSE track the largest output alone; training on
 * (y − mean) / std gives every output the same weight. The statistics come from the source training
 * labels at train start and travel with the run: in every checkpoint's safetensors metadata (so
 * resume and `ort-dann export` reuse them) and in the run config. Metrics and predictions are
 * reported in original units, and the exported model folds the inverse transform into its last
 * Linear (see src/export/export.ts), so it outputs original units with no user code.
 */
import { readSafetensors } from '../io/safetensors.ts';
import { UserError } from '../errors.ts';
import type { BatchSource } from './types.ts';

/** Per-output mean and standard deviation of the source training labels. */
export interface TargetScaling {
  outputs: string[];
  mean: number[];
  std: number[];
}

/** The safetensors `__metadata__` key of model.safetensors that holds the JSON TargetScaling. */
export const TARGET_SCALING_META = 'ort-dann.target-scaling';

/** Simulator sources are endless: their statistics come from this many first training samples. */
export const SIMULATOR_STAT_SAMPLES = 512;

/**
 * Mean and population std of each column of `labels` ([rows, K] row-major), in float64. A constant
 * column keeps std 1 (dividing by ~0 would blow its loss up; such an output has nothing to learn).
 */
export function fitTargetScaling(labels: Float32Array, outputs: string[]): TargetScaling {
  const K = outputs.length;
  const rows = labels.length / K;
  if (!Number.isInteger(rows) || rows < 1) throw new Error(`fitTargetScaling: ${labels.length} values are not rows of ${K} outputs`);
  const mean = new Array<number>(K).fill(0);
  const std = new Array<number>(K).fill(0);
  for (let i = 0; i < rows; i++) for (let k = 0; k < K; k++) mean[k] += labels[i * K + k];
  for (let k = 0; k < K; k++) mean[k] /= rows;
  for (let i = 0; i < rows; i++) for (let k = 0; k < K; k++) std[k] += (labels[i * K + k] - mean[k]) ** 2;
  for (let k = 0; k < K; k++) {
    const s = Math.sqrt(std[k] / rows);
    std[k] = s > 1e-8 * Math.max(1, Math.abs(mean[k])) ? s : 1;
  }
  return { outputs: [...outputs], mean, std };
}

/**
 * Statistics of a labelled source's training labels: the whole label table of a folder (no image
 * decoding), or the first SIMULATOR_STAT_SAMPLES samples of a simulator's training stream, after
 * which the source is rewound so training still starts at sample 0.
 */
export async function targetScalingOf(source: BatchSource & { scan?: { labels?: Float32Array } }, outputs: string[], batchSize: number): Promise<TargetScaling> {
  if (source.scan?.labels) return fitTargetScaling(source.scan.labels, outputs);
  const want = Math.min(source.length ?? SIMULATOR_STAT_SAMPLES, SIMULATOR_STAT_SAMPLES);
  const K = outputs.length;
  const labels = new Float32Array(want * K);
  let filled = 0;
  const start = source.position ?? 0;
  while (filled < want) {
    const b = await source.nextBatch(Math.min(batchSize, want - filled));
    if (!b.labels) throw new Error(`${source.name}: a labelled source served a batch without labels`);
    labels.set(b.labels.subarray(0, b.count * K), filled * K);
    filled += b.count;
  }
  source.seek?.(start);
  return fitTargetScaling(labels, outputs);
}

/** (y − mean) / std, as a new array. */
export function standardize(labels: Float32Array, s: TargetScaling): Float32Array {
  const K = s.mean.length;
  const out = new Float32Array(labels.length);
  for (let i = 0; i < labels.length; i++) out[i] = (labels[i] - s.mean[i % K]) / s.std[i % K];
  return out;
}

/** y · std + mean, as a new array: standardized predictions back in original units. */
export function destandardize(values: Float32Array, s: TargetScaling): Float32Array {
  const K = s.mean.length;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = values[i] * s.std[i % K] + s.mean[i % K];
  return out;
}

/** Checks a recorded TargetScaling (JSON text) against the model's outputs; `where` names its file. */
export function parseTargetScaling(text: string, outputs: string[], where: string): TargetScaling {
  let v: Partial<TargetScaling>;
  try {
    v = JSON.parse(text) as Partial<TargetScaling>;
  } catch {
    throw new UserError(`${where}: metadata ${TARGET_SCALING_META} is not JSON; the checkpoint is damaged, use another one`);
  }
  const numbers = (a: unknown): a is number[] => Array.isArray(a) && a.length === outputs.length && a.every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!v || !Array.isArray(v.outputs) || v.outputs.join() !== outputs.join() || !numbers(v.mean) || !numbers(v.std) || v.std.some((x) => x <= 0)) {
    throw new UserError(`${where}: metadata ${TARGET_SCALING_META} does not describe the outputs ${outputs.join(', ')}; the checkpoint belongs to another model`);
  }
  return { outputs: v.outputs, mean: v.mean, std: v.std };
}

/** The scaling recorded in a model.safetensors, or undefined for a run trained on raw targets. */
export async function readTargetScaling(modelFile: string, outputs: string[]): Promise<TargetScaling | undefined> {
  const { metadata } = await readSafetensors(modelFile);
  const text = metadata[TARGET_SCALING_META];
  return text === undefined ? undefined : parseTargetScaling(text, outputs, modelFile);
}
