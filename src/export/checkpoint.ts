/**
 * Finding what `ort-dann export --checkpoint X [--artifacts DIR]` means: X is a run directory
 * (runs/<name>/ with manifest.json and best/ or latest/ checkpoint folders), an artifacts folder
 * (checkpoint.safetensors), or a .safetensors file; the manifest is the one in --artifacts, else the
 * one beside the checkpoint or in the folder above (runs/<name>/best/model.safetensors).
 *
 * How the run preprocessed its images is taken from, in order: the checkpoint's safetensors
 * `__metadata__` (keys below), then the run's own model.onnx (which `train` exports at the end).
 *   ort-dann.normalization   JSON Normalization
 *   ort-dann.run-id          the training run's id
 *   ort-dann.source-commit   the ort-dann commit that trained it
 *   ort-dann.target-scaling  JSON mean/std of standardized regression targets (src/training/standardize.ts)
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseNormalization, type Normalization } from '../data/normalization.ts';
import { UserError } from '../errors.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { type Tensor } from '../io/tensor.ts';
import { readManifest, type Manifest } from '../onnx/manifest.ts';
import { readModelFile } from '../onnx/proto.ts';
import { readInferenceMetadata } from './metadata.ts';
import { parseTargetScaling, TARGET_SCALING_META, type TargetScaling } from '../training/standardize.ts';

/** Checkpoint files looked for in a directory, in this order: the best model before the latest. */
export const CHECKPOINT_NAMES = ['best/model.safetensors', 'best.safetensors', 'checkpoint.safetensors', 'latest/model.safetensors', 'latest.safetensors'];

export const CHECKPOINT_META = {
  normalization: 'ort-dann.normalization',
  runId: 'ort-dann.run-id',
  sourceCommit: 'ort-dann.source-commit',
} as const;

export interface LoadedCheckpoint {
  file: string;
  manifest: Manifest;
  /** The directory whose manifest.json was read. */
  manifestDir: string;
  tensors: Map<string, Tensor>;
  normalization?: Normalization;
  /** The file `normalization` was read from. */
  recordedIn?: string;
  runId?: string;
  sourceCommit?: string;
  /** Present when the run trained on standardized targets; export folds it into the model. */
  targetScaling?: TargetScaling;
}

/** The checkpoint file `checkpoint` names: the path itself, or for a folder the first of CHECKPOINT_NAMES in it. */
export function findCheckpointFile(checkpoint: string): string {
  let isDir: boolean;
  try {
    isDir = statSync(checkpoint).isDirectory();
  } catch {
    throw new UserError(`--checkpoint ${checkpoint}: no such file or folder; give a run directory (runs/<name>) or a .safetensors file`);
  }
  if (!isDir) return checkpoint;
  const found = CHECKPOINT_NAMES.map((n) => join(checkpoint, n)).find((p) => existsSync(p));
  if (!found) throw new UserError(`--checkpoint ${checkpoint}: the folder holds none of ${CHECKPOINT_NAMES.join(', ')}; point at a run directory or a .safetensors file`);
  return found;
}

export async function loadCheckpoint(checkpoint: string, artifacts?: string): Promise<LoadedCheckpoint> {
  const file = findCheckpointFile(checkpoint);
  const manifestDir = artifacts ?? [dirname(file), dirname(dirname(file))].find((d) => existsSync(join(d, 'manifest.json')));
  if (!manifestDir || !existsSync(join(manifestDir, 'manifest.json'))) {
    throw new UserError(artifacts
      ? `--artifacts ${artifacts}: no manifest.json there; give the build-artifacts folder the run was trained from`
      : `--checkpoint ${checkpoint}: no manifest.json beside ${file}; pass --artifacts DIR (the build-artifacts folder the run was trained from)`);
  }
  const manifest = readManifest(manifestDir);
  const { tensors, metadata } = await readSafetensors(file);
  const loaded: LoadedCheckpoint = { file, manifest, manifestDir, tensors, runId: metadata[CHECKPOINT_META.runId], sourceCommit: metadata[CHECKPOINT_META.sourceCommit] };
  const scaling = metadata[TARGET_SCALING_META];
  if (scaling !== undefined) loaded.targetScaling = parseTargetScaling(scaling, manifest.config.outputs, file);
  const recorded = metadata[CHECKPOINT_META.normalization];
  if (recorded !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(recorded);
    } catch {
      throw new UserError(`${file}: metadata ${CHECKPOINT_META.normalization} is not JSON; pass --normalization to override it`);
    }
    loaded.normalization = parseNormalization(parsed, `${file}: metadata ${CHECKPOINT_META.normalization}`);
  } else if (!artifacts) {
    const previous = join(manifestDir, 'model.onnx');
    if (existsSync(previous)) {
      const m = readInferenceMetadata(readModelFile(previous), previous);
      loaded.normalization = m.normalization;
      loaded.runId ??= m.runId;
      loaded.sourceCommit ??= m.sourceCommit;
      loaded.recordedIn = previous;
    }
  }
  if (loaded.normalization && !loaded.recordedIn) loaded.recordedIn = file;
  return loaded;
}
