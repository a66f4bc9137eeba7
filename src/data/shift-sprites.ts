/**
 * A dSprites-like shift (the Color → Noisy task of the regression-DA benchmarks): a square, ellipse or
 * triangle at a random scale, rotation and position. Source: the sprite in a random colour from
 * U(0.5, 1)³ on black. Target: per-pixel uniform noise as background, the sprite saturated to white
 * (min(sprite + noise, 1), as disentanglement_lib's noisy variant). Outputs: scale, x, y in [0, 1].
 */
import type { Rng } from '../rng.ts';
import type { Domain } from '../onnx/manifest.ts';
import type { Shift } from './shifts.ts';

/** Point (u, v) in the sprite's frame, unit half-size: inside the shape? */
const SHAPES: ((u: number, v: number) => boolean)[] = [
  (u, v) => Math.abs(u) <= 0.8 && Math.abs(v) <= 0.8,
  (u, v) => u * u + (v * v) / 0.36 <= 1,
  (u, v) => v >= -0.7 && v <= 0.9 && Math.abs(u) <= (0.9 - v) * 0.55,
];

function render(domain: Domain, rng: Rng, size: number, out: Float32Array): number[] {
  const shape = SHAPES[rng.int(0, SHAPES.length - 1)];
  const scale = rng.uniform(0, 1);
  const x = rng.uniform(0, 1);
  const y = rng.uniform(0, 1);
  const theta = rng.uniform(0, 2 * Math.PI);
  // dSprites: scale 0.5..1 of a sprite about a fifth of the image; centres keep it inside the frame.
  const half = (0.5 + 0.5 * scale) * 0.16 * size;
  const cx = (0.2 + 0.6 * x) * size;
  const cy = (0.2 + 0.6 * y) * size;
  const cos = Math.cos(theta);
  const sin = Math.sin(theta);
  const plane = size * size;
  const colour = domain === 'source' ? [rng.uniform(0.5, 1), rng.uniform(0.5, 1), rng.uniform(0.5, 1)] : [1, 1, 1];
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      const dx = (c + 0.5 - cx) / half;
      const dy = (r + 0.5 - cy) / half;
      const inside = shape(cos * dx + sin * dy, -sin * dx + cos * dy);
      const p = r * size + c;
      for (let ch = 0; ch < 3; ch++) {
        if (domain === 'source') out[ch * plane + p] = inside ? colour[ch] : 0;
        else out[ch * plane + p] = inside ? 1 : rng.next();
      }
    }
  }
  return [scale, x, y];
}

export const spritesShift: Shift = {
  name: 'sprites',
  describe: 'dSprites-like Color → Noisy: coloured sprite on black → white sprite on uniform noise; regress scale, x, y',
  outputs: ['scale', 'x', 'y'],
  render,
};
