/**
 * The last guard before a model file is written: a model whose weights or outputs are NaN/Inf (a
 * diverged run, a damaged checkpoint) is refused instead of shipped. Weights are checked by name, then
 * the serialized model runs once in ONNX Runtime on a fixed probe batch, since finite weights can still
 * overflow in the forward pass (e.g. after a step at a huge learning rate).
 */
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.ts';
import { INPUT_NAME } from './metadata.ts';

/** Probe images: mid-grey with a gentle ramp, in [0, 1] like decoded images. */
function probeBatch(size: number, channels: number, n = 2): Float32Array {
  const plane = size * size;
  const images = new Float32Array(n * channels * plane);
  for (let i = 0; i < images.length; i++) images[i] = 0.25 + 0.5 * ((i % plane) / plane);
  return images;
}

function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return -1;
}

/** Throws a one-line UserError naming `where` when a weight is not finite. */
export function checkFiniteWeights(weights: Iterable<[string, Float32Array]>, where: string, fix: string): void {
  for (const [name, data] of weights) {
    const i = firstNonFinite(data);
    if (i >= 0) throw new UserError(`${where}: parameter ${name} holds ${data[i]} (element ${i}); nothing was written; ${fix}`);
  }
}

/** Runs the encoded inference model on the probe batch and throws when an output is not finite. */
export async function checkFiniteOutputs(model: Uint8Array, imageSize: number, channels: number, where: string, fix: string): Promise<void> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], graphOptimizationLevel: 'all' });
  try {
    const n = 2;
    const out = await session.run({ [INPUT_NAME]: new ort.Tensor('float32', probeBatch(imageSize, channels, n), [n, channels, imageSize, imageSize]) });
    for (const name of session.outputNames) {
      const data = out[name].data as Float32Array;
      const i = firstNonFinite(data);
      if (i >= 0) throw new UserError(`${where}: the model outputs ${data[i]} (${name}) on a probe batch although its weights are finite (they overflow); nothing was written; ${fix}`);
    }
  } finally {
    await session.release();
  }
}
