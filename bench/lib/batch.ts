/**
 * The benches' fixed random batch. Images are filled by the library's table-based normal draws
 * (Rng.addNormalNoise): at 256 px 8+8 that takes about 45 ms, as torch.randn does on the PyTorch
 * peer's side, where one Box–Muller draw per pixel took 170–190 ms and counted in our start-up alone.
 */
import { type Rng } from '../../src/rng.ts';
import { type CombinedBatch } from '../../src/training/dann-step.ts';

export function syntheticBatch(rng: Rng, o: { count: number; nSource: number; imageSize: number; outputs: number }): CombinedBatch {
  const images = rng.addNormalNoise(new Float32Array(o.count * 3 * o.imageSize * o.imageSize), 1);
  const labels = Float32Array.from({ length: o.nSource * o.outputs }, () => rng.normal());
  return { images, count: o.count, nSource: o.nSource, labels };
}
