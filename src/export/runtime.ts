/**
 * Running an exported model on image files with onnxruntime-node, preprocessing exactly as training
 * did: every image goes through the data layer's `loadImageTensor` with the size and normalization
 * recorded in the model's metadata. Batches are decoded one ahead of the batch being run, so large
 * folders stream through in bounded memory.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { isImageFileName, loadImageTensor } from '../data/decode.ts';
import { UserError } from '../errors.ts';
import { readModelFile } from '../onnx/proto.ts';
import { INPUT_NAME, readInferenceMetadata, type GraphOutput, type InferenceMetadata } from './metadata.ts';

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'webgpu'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export interface InferenceModel {
  file: string;
  metadata: InferenceMetadata;
  session: ort.InferenceSession;
  release(): Promise<void>;
}

export interface OpenOptions {
  ep?: ExecutionProvider;
  /** Intra-op threads; ORT's default (one per core) when omitted. */
  threads?: number;
}

/**
 * Process-wide: ORT's own error log lines (e.g. a missing CUDA library) would repeat what the CLI
 * reports as one-line errors; keep only fatal ones. Call before the first session is created.
 */
export function quietRuntimeLog(): void {
  ort.env.logLevel = 'fatal';
}

/** Opens an exported model: checks it is ONNX with ort-dann metadata, then creates the session. */
export async function openInferenceModel(file: string, opts: OpenOptions = {}): Promise<InferenceModel> {
  const metadata = readInferenceMetadata(readModelFile(file), file);
  const ep = opts.ep ?? 'cpu';
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(file, {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
      // The binding rejects an explicit undefined.
      ...(opts.threads === undefined ? {} : { intraOpNumThreads: opts.threads }),
    });
  } catch (e) {
    const message = ((e as Error).message ?? String(e)).split('\n')[0];
    if (ep === 'cuda') throw new UserError(`--ep cuda: onnxruntime-node cannot use CUDA here (${message}); reinstall with \`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci\` on a Linux x64 machine with CUDA 12, or use --ep cpu`);
    if (ep !== 'cpu') throw new UserError(`--ep ${ep}: onnxruntime-node cannot use ${ep} here (${message}); use --ep cpu`);
    throw new UserError(`${file}: ONNX Runtime cannot load it (${message}); re-export it with \`ort-dann export\``);
  }
  if (!session.inputNames.includes(INPUT_NAME) || session.outputNames[0] !== 'prediction') {
    await session.release();
    throw new UserError(`${file}: inputs ${session.inputNames.join(', ')} and outputs ${session.outputNames.join(', ')} are not those of an ort-dann export; re-export it with \`ort-dann export\``);
  }
  return { file, metadata, session, release: () => session.release() };
}

/**
 * The image files named by `paths`, in order: a file is taken as given, a folder contributes its
 * image files (by extension, not recursive, hidden files skipped) sorted by name.
 */
export async function listImageFiles(paths: string[]): Promise<string[]> {
  const files: string[] = [];
  for (let p of paths) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new UserError(`${p}: a symbolic link loop (ELOOP); fix or remove the link`);
      if (code === 'EACCES' || code === 'EPERM') throw new UserError(`${p}: cannot be read (${code}); check its permissions`);
      throw new UserError(`${p}: no such file or folder; check the path`);
    }
    if (!isDir) {
      files.push(p);
      continue;
    }
    // The layout train and evaluate accept: a folder whose images are in images/.
    if (await stat(join(p, 'images')).then((s) => s.isDirectory(), () => false)) p = join(p, 'images');
    const names = (await readdir(p, { withFileTypes: true }))
      .filter((e) => !e.isDirectory() && !e.name.startsWith('.') && isImageFileName(e.name))
      .map((e) => e.name)
      .sort();
    if (names.length === 0) throw new UserError(`${p}: no image files in this folder; point at a folder of images`);
    files.push(...names.map((n) => join(p, n)));
  }
  if (files.length === 0) throw new UserError('name at least one image file or folder');
  return files;
}

export interface PredictedBatch {
  files: string[];
  /** Each model output for these rows, row-major: prediction [n, K], features [n, F], domain_logit [n, 1]. */
  outputs: Partial<Record<GraphOutput, Float32Array>>;
}

export interface BatchOptions {
  batchSize: number;
  /** Leave undecodable images out (reported to `onSkip`) instead of failing. */
  skipBadImages?: boolean;
  onSkip?: (file: string, reason: string) => void;
}

/** Runs the model over `files` in batches, yielding each batch's outputs in file order. */
export async function* predictFiles(model: InferenceModel, files: string[], opts: BatchOptions): AsyncGenerator<PredictedBatch> {
  const { imageSize: size, normalization } = model.metadata;
  const plane = 3 * size * size;
  const decode = async (start: number) => {
    const chunk = files.slice(start, start + opts.batchSize);
    const tensors = await Promise.all(chunk.map(async (f) => {
      try {
        return await loadImageTensor(f, size, normalization);
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        if (!opts.skipBadImages) throw new UserError(`${e.message}; or pass --skip-bad-images to leave unreadable images out`);
        opts.onSkip?.(f, e.message);
        return undefined;
      }
    }));
    const kept = chunk.filter((_, k) => tensors[k] !== undefined);
    const images = new Float32Array(kept.length * plane);
    let row = 0;
    for (const t of tensors) if (t) images.set(t, plane * row++);
    return { files: kept, images };
  };
  let next = files.length > 0 ? decode(0) : undefined;
  for (let start = 0; next; start += opts.batchSize) {
    const batch = await next;
    // Decode the following batch (sharp works on libuv threads) while ORT runs this one.
    next = start + opts.batchSize < files.length ? decode(start + opts.batchSize) : undefined;
    next?.catch(() => undefined); // its error surfaces when awaited; do not let it go unhandled meanwhile
    if (batch.files.length === 0) continue;
    const result = await model.session.run({ [INPUT_NAME]: new ort.Tensor('float32', batch.images, [batch.files.length, 3, size, size]) });
    const outputs: PredictedBatch['outputs'] = {};
    for (const name of model.metadata.outputs) outputs[name] = result[name].data as Float32Array;
    yield { files: batch.files, outputs };
  }
}

/** Row-wise softmax of [n, k] logits, computed in float64 with the row maximum subtracted. */
export function softmaxRows(logits: Float32Array, k: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let r = 0; r < logits.length; r += k) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, logits[r + j]);
    let sum = 0;
    for (let j = 0; j < k; j++) sum += out[r + j] = Math.exp(logits[r + j] - max);
    for (let j = 0; j < k; j++) out[r + j] /= sum;
  }
  return out;
}
