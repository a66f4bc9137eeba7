/**
 * DANN's step over a model-agnostic TrainingSession: one combined batch per step (source rows first,
 * then target rows; labels for the source rows only), fed by manifest role with the gradient-reversal
 * coefficient alpha and the domain-loss weight lambda. The fit loop, validation, lr-find and the
 * bench all step through here.
 */
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.ts';
import type { Manifest } from '../onnx/manifest.ts';
import type { StepFeeds, StepOutputs, TrainingSession } from './session.ts';
import type { ImageBatch } from './types.ts';

/** One combined batch: source rows first, then target rows. */
export interface CombinedBatch {
  /** [count, 3, size, size] */
  images: Float32Array;
  count: number;
  nSource: number;
  /** [nSource, K] (regression) or [nSource] class indices (classification). */
  labels: Float32Array;
}

export interface StepLosses {
  loss: number;
  regressionLoss: number;
  domainLoss: number;
}

export interface EvalResult extends StepLosses {
  /** [count, K] */
  prediction: Float32Array;
  /** [count] */
  domainLogit: Float32Array;
}

/** The combined batch's images: source rows first, then target rows. */
export function concatBatches(a: ImageBatch, b: ImageBatch | undefined): Float32Array {
  if (!b) return a.images;
  const out = new Float32Array(a.images.length + b.images.length);
  out.set(a.images);
  out.set(b.images, a.images.length);
  return out;
}

/** A labelled source batch and an optional unlabelled target batch as one combined batch. */
export function combineBatches(source: ImageBatch, target?: ImageBatch): CombinedBatch {
  return { images: concatBatches(source, target), count: source.count + (target?.count ?? 0), nSource: source.count, labels: source.labels! };
}

const scalar = (v: number) => new ort.Tensor('float32', Float32Array.from([v]), []);

/** The role feeds of a combined batch; `alpha` only for the training graph. */
export function dannFeeds(manifest: Manifest, b: CombinedBatch, lambdaDomain: number, alpha?: number): StepFeeds {
  const size = manifest.config.imageSize;
  if (b.images.length !== b.count * 3 * size * size) throw new UserError(`batch images hold ${b.images.length} values; ${b.count} images of 3×${size}×${size} need ${b.count * 3 * size * size} (are the artifacts built for another --image-size?)`);
  if (!(b.nSource >= 0 && b.nSource <= b.count)) throw new Error(`internal: nSource ${b.nSource} outside [0, ${b.count}]`);
  const K = manifest.config.outputs.length;
  const classification = manifest.config.task === 'classification';
  if (b.labels.length !== b.nSource * (classification ? 1 : K)) throw new Error(`internal: ${b.labels.length} label values for ${b.nSource} source rows`);
  return {
    image: new ort.Tensor('float32', b.images, [b.count, 3, size, size]),
    label: new ort.Tensor('float32', b.labels, classification ? [b.nSource] : [b.nSource, K]),
    n_source: new ort.Tensor('int64', BigInt64Array.from([BigInt(b.nSource)]), [1]),
    lambda_domain: scalar(lambdaDomain),
    ...(alpha === undefined ? {} : { alpha: scalar(alpha) }),
  };
}

function losses(out: StepOutputs): StepLosses {
  return { loss: out.loss![0], regressionLoss: out.regression_loss![0], domainLoss: out.domain_loss![0] };
}

/** Forward, losses and backward of one combined batch (gradients accumulate until lazyResetGrad). */
export async function dannTrainStep(session: TrainingSession, b: CombinedBatch, o: { alpha: number; lambdaDomain: number; dropoutMasks?: Record<string, Float32Array> }): Promise<StepLosses> {
  return losses(await session.runTrainStep(dannFeeds(session.manifest, b, o.lambdaDomain, o.alpha), o.dropoutMasks));
}

/** Eval-mode forward of one combined batch: losses on the source rows, predictions and domain logits of every row. */
export async function dannEvalStep(session: TrainingSession, b: CombinedBatch, lambdaDomain: number): Promise<EvalResult> {
  const out = await session.runEvalStep(dannFeeds(session.manifest, b, lambdaDomain));
  return { ...losses(out), prediction: out.prediction!, domainLogit: out.domain_logit! };
}
