/**
 * A bright-field → dark-field shift (a microscopy-like shift of our own): one round cell and a few
 * small specks. Source: a dark cell on an even bright background with mild noise. Target: contrast
 * inverted (bright cell on dark), soft defocused edges, uneven illumination falling off from a random
 * point, a colour tint and stronger noise. Outputs: radius, x, y of the cell, in [0, 1].
 */
import type { Rng } from '../rng.ts';
import type { Domain } from '../onnx/manifest.ts';
import type { Shift } from './shifts.ts';

function render(domain: Domain, rng: Rng, size: number, out: Float32Array): number[] {
  const radius = rng.uniform(0, 1);
  const x = rng.uniform(0, 1);
  const y = rng.uniform(0, 1);
  const r = (0.08 + 0.12 * radius) * size;
  const cx = (0.2 + 0.6 * x) * size;
  const cy = (0.2 + 0.6 * y) * size;
  const specks = Array.from({ length: rng.int(2, 5) }, () => ({ x: rng.uniform(0, size), y: rng.uniform(0, size), r: rng.uniform(1, 2.5) }));
  const target = domain === 'target';
  // Edge width in pixels: sharp in focus (source), defocused in the target.
  const edge = target ? 0.08 * r + 1.5 : 0.5;
  const tint = target ? [rng.uniform(0.7, 1), rng.uniform(0.7, 1), rng.uniform(0.7, 1)] : [1, 1, 1];
  const light = { x: rng.uniform(0, size), y: rng.uniform(0, size), falloff: rng.uniform(0.3, 0.7) };
  const noise = target ? 0.08 : 0.03;
  const plane = size * size;
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      const px = col + 0.5;
      const py = row + 0.5;
      // Cell coverage: 1 inside, 0 outside, a logistic ramp of width `edge` across the membrane.
      const d = Math.hypot(px - cx, py - cy) - r;
      let cover = 1 / (1 + Math.exp(d / edge));
      for (const s of specks) if (Math.hypot(px - s.x, py - s.y) <= s.r) cover = Math.max(cover, 0.6);
      let value = target ? 0.15 + 0.65 * cover : 0.75 - 0.5 * cover;
      if (target) value *= 1 - light.falloff * Math.min(1, Math.hypot(px - light.x, py - light.y) / size);
      const p = row * size + col;
      for (let ch = 0; ch < 3; ch++) out[ch * plane + p] = Math.min(1, Math.max(0, value * tint[ch] + rng.normal(0, noise)));
    }
  }
  return [radius, x, y];
}

export const cellsShift: Shift = {
  name: 'cells',
  describe: 'bright-field → dark-field: dark sharp cell on even light → bright defocused cell on dark, uneven light, tint, noise; regress radius, x, y',
  outputs: ['radius', 'x', 'y'],
  render,
};
