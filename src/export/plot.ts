/** Scatter plots of prediction against truth as PNG, on the shared raster of src/plot.ts. */

import { Canvas, type Rgb, textWidth, ticks } from '../plot.ts';

export { textWidth, ticks };

const INK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const POINT: Rgb = [31, 119, 180];
const DIAGONAL: Rgb = [214, 39, 40];

export interface ScatterOptions {
  title: string;
  /** Extra line under the title, e.g. the errors. */
  subtitle?: string;
  size?: number;
}

/**
 * Prediction (y) against truth (x) on equal axes spanning both, with the y = x line: points on the
 * line are exact, above it over-predicted.
 */
export function scatterPlot(truth: ArrayLike<number>, predicted: ArrayLike<number>, opts: ScatterOptions): Buffer {
  const size = opts.size ?? 560;
  const img = new Canvas(size, size);
  const left = 84;
  const right = size - 24;
  const top = opts.subtitle ? 76 : 52;
  const bottom = size - 64;
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of [truth, predicted]) for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i])) [lo, hi] = [Math.min(lo, a[i]), Math.max(hi, a[i])];
  if (!(hi >= lo)) [lo, hi] = [0, 1];
  const pad = (hi - lo) * 0.05 || Math.abs(lo) * 0.05 || 1;
  [lo, hi] = [lo - pad, hi + pad];
  const px = (v: number) => left + ((v - lo) / (hi - lo)) * (right - left);
  const py = (v: number) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);

  const marks = ticks(lo, hi);
  const step = marks.length > 1 ? marks[1] - marks[0] : 1;
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  for (const t of marks) {
    const label = t.toFixed(decimals);
    img.line(px(t), top, px(t), bottom, GRID);
    img.line(left, py(t), right, py(t), GRID);
    img.line(px(t), bottom, px(t), bottom + 5, INK);
    img.line(left - 5, py(t), left, py(t), INK);
    img.text(px(t) - textWidth(label) / 2, bottom + 10, label, INK);
    img.text(left - 10 - textWidth(label), py(t) - 7, label, INK);
  }
  img.line(px(lo), py(lo), px(hi), py(hi), DIAGONAL, 2);
  // Fainter points when there are many, so dense regions stay readable.
  const alpha = Math.min(0.8, Math.max(0.15, 40 / Math.sqrt(truth.length)));
  for (let i = 0; i < truth.length; i++) if (Number.isFinite(truth[i]) && Number.isFinite(predicted[i])) img.circle(px(truth[i]), py(predicted[i]), 3, POINT, alpha);
  img.line(left, top, left, bottom, INK, 2);
  img.line(left, bottom, right, bottom, INK, 2);

  img.text((left + right) / 2 - textWidth(opts.title) / 2, 10, opts.title, INK);
  if (opts.subtitle) img.text((left + right) / 2 - textWidth(opts.subtitle) / 2, 32, opts.subtitle, INK);
  img.text((left + right) / 2 - textWidth('truth') / 2, size - 26, 'truth', INK);
  img.text(8, top - 20, 'prediction', INK);
  // Top left: the y = x line leaves that corner empty unless the model over-predicts badly.
  img.line(left + 12, top + 17, left + 38, top + 17, DIAGONAL, 2);
  img.text(left + 46, top + 10, 'y = x', INK);
  return img.png();
}
