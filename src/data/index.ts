/**
 * The data layer's public API: what the train, export and predict commands call.
 *
 *   openSource('particles' | DIR | './my-sim.mjs', …)  labelled source domain (BatchSource)
 *   openTarget(DIR, …)                                  unlabelled target domain (BatchSource)
 *   loadImageTensor(path, size, normalization)          predict's single-image preprocessing
 *   ensureDemoData / generateDemoData                   the built-in domain-shift demo
 */
import { stat } from 'node:fs/promises';
import { UserError } from '../errors.ts';
import { openImageFolder, openLabelledFolder, type FolderSource, type ImageFolderOptions } from './folder.ts';
import type { Normalization } from './normalization.ts';
import type { Seed } from '../rng.ts';
import { openSimulator, simulatorSpec, type SimulatorSource } from './simulator.ts';

export { createRng, Rng, type Seed } from '../rng.ts';
export {
  IMAGENET_NORMALIZATION,
  NO_NORMALIZATION,
  NORMALIZATION_NAMES,
  normalizationFromName,
  normalizeInPlace,
  parseNormalization,
  type Normalization,
} from './normalization.ts';
export { DEFAULT_MAX_INPUT_PIXELS, IMAGE_EXTENSIONS, decodeImage, loadImageTensor, readImageHeader } from './decode.ts';
export { FolderSource, openImageFolder, openLabelledFolder, validateImageFolder, type FolderScan, type ImageFolderOptions, type ValidateOptions } from './folder.ts';
export { parseLabelsCsv, readLabelsCsv, type LabelTable } from './labels.ts';
export {
  DEMO_TARGET_OPTICS,
  PARTICLE_LABEL_RANGES,
  PARTICLE_OUTPUT_NAMES,
  SOURCE_OPTICS,
  particleLabels,
  renderParticles,
  sampleParticleScene,
  simulateParticles,
  type Optics,
  type Particle,
  type ParticleScene,
} from './particles.ts';
export { SimulatorSource, defaultWorkerCount, openSimulator, simulatorSpec, type SimulatorOptions } from './simulator.ts';
export { ensureDemoData, generateDemoData, type DemoData, type DemoDataOptions } from './demo.ts';

export interface SourceOptions {
  /** Model input size. */
  size: number;
  seed: Seed;
  normalization?: Normalization;
  /** 'train' (default) or 'val': simulators draw from separate streams, folders shuffle or keep order. */
  split?: 'train' | 'val';
  /** Simulators only: a fixed set of this many samples (e.g. validation); endless when omitted. */
  length?: number;
  /** Simulators only: worker threads (0 = render in this thread). */
  workers?: number;
  /** Folders only (see ImageFolderOptions). */
  skipBadImages?: boolean;
  verify?: 'header' | 'full';
  prefetchBatches?: number;
  /** How messages name the flag, e.g. '--source'. */
  label?: string;
  /** Simulator modules: the longest one sample (or the import) may take (default 60 s). */
  timeoutMs?: number;
}

/**
 * Opens a labelled source domain from a `--source` value: 'particles' (built-in simulator), a folder
 * with images/ and labels.csv, or a simulator module (.mjs/.js/.ts). Problems surface here, before
 * training: missing paths, bad CSV rows or images, a module that fails on sample 0.
 */
export async function openSource(source: string, options: SourceOptions): Promise<SimulatorSource | FolderSource> {
  const split = options.split ?? 'train';
  const label = options.label ?? '--source';
  const isDir = source !== 'particles' && (await stat(source).then((s) => s.isDirectory(), () => false));
  if (isDir) {
    return openLabelledFolder(source, {
      size: options.size,
      seed: options.seed,
      normalization: options.normalization,
      stream: `source-${split}`,
      shuffle: split === 'train',
      skipBadImages: options.skipBadImages,
      verify: options.verify,
      prefetchBatches: options.prefetchBatches,
      label,
    });
  }
  let spec;
  try {
    spec = simulatorSpec(source);
  } catch (e) {
    if (e instanceof UserError) throw new UserError(e.message.replace(/^--source/, label));
    throw e;
  }
  return openSimulator(spec, {
    size: options.size,
    seed: options.seed,
    stream: `source-${split}`,
    length: options.length,
    normalization: options.normalization,
    workers: options.workers,
    prefetchBatches: options.prefetchBatches,
    name: source,
    timeoutMs: options.timeoutMs,
  });
}

/**
 * Opens an unlabelled target domain (`--target` / `--target-val`). `labelsCsv` (`--target-labels`)
 * attaches labels for evaluation only. Training splits reshuffle every epoch; 'val' keeps file order.
 */
export async function openTarget(
  dir: string,
  options: Omit<ImageFolderOptions, 'stream' | 'shuffle'> & { split?: 'train' | 'val' },
): Promise<FolderSource> {
  const split = options.split ?? 'train';
  return openImageFolder(dir, { ...options, stream: `target-${split}`, shuffle: split === 'train', label: options.label ?? (split === 'train' ? '--target' : '--target-val') });
}

/**
 * A batch larger than a finite source would repeat its images within one batch (and validation would
 * count them twice); refused before any work, naming the flag and the largest batch that fits.
 */
export function checkBatchFits(batchSize: number, sources: [what: string, source: { length: number | undefined } | undefined][]): void {
  for (const [what, s] of sources) {
    if (s?.length !== undefined && s.length < batchSize) {
      throw new UserError(`--batch-size ${batchSize} is larger than the ${s.length} images of ${what}; lower --batch-size to ${s.length} or fewer, or add images`);
    }
  }
}
