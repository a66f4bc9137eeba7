/**
 * fastai's `lr_find` (docs/fastai-semantics.md §4): an exponentially growing
 * learning rate, the Recorder's smoothed loss, stop on divergence, and the `valley` suggestion; plus
 * the loss-vs-lr plot as a PNG. Training is injected as `step(lr)`, so the caller saves the weights and
 * optimizer state before and restores them afterwards, as fastai's LRFinder does.
 */
import { Canvas, type Rgb, textWidth, ticks } from '../plot.ts';
import { SmoothLoss } from './recorder.ts';

export interface LrFindOptions {
  startLr?: number;
  endLr?: number;
  numIt?: number;
  /** Stop once the smoothed loss exceeds 4× the best smoothed loss. */
  stopDiv?: boolean;
  beta?: number;
}

/** Runs one training batch at `lr` (all groups) and returns its loss. */
export type LrFindStep = (lr: number, iteration: number) => Promise<number>;

export interface Suggestion {
  lr: number;
  /** Index into `lrs`/`losses`. */
  index: number;
  loss: number;
}

export interface LrFindResult {
  /** Learning rate of each batch run. */
  lrs: number[];
  /** Smoothed loss after each batch (fastai's recorder.losses). */
  losses: number[];
  rawLosses: number[];
  stoppedBy: 'divergence' | 'num_it';
  /** The valley suggestion; undefined when too few batches ran (fewer than numIt/10 + 6). */
  valley?: Suggestion;
}

/** fastai `SchedExp`: start·(end/start)^pos. */
const schedExp = (start: number, end: number, pos: number) => start * (end / start) ** pos;

export async function lrFind(step: LrFindStep, opts: LrFindOptions = {}): Promise<LrFindResult> {
  const startLr = opts.startLr ?? 1e-7;
  const endLr = opts.endLr ?? 10;
  const requested = opts.numIt ?? 100;
  // LRFinder runs at least 6 batches; the suggestion window still uses the requested count, as fastai does.
  const numIt = Math.max(6, requested);
  const stopDiv = opts.stopDiv ?? true;
  const smooth = new SmoothLoss(opts.beta);
  const lrs: number[] = [];
  const losses: number[] = [];
  const rawLosses: number[] = [];
  let best = Infinity;
  let stoppedBy: LrFindResult['stoppedBy'] = 'num_it';
  for (let it = 0; it < numIt; it++) {
    const lr = schedExp(startLr, endLr, it / numIt);
    const raw = await step(lr, it);
    const s = smooth.add(raw);
    lrs.push(lr);
    losses.push(s);
    rawLosses.push(raw);
    if (s < best) best = s;
    if (stopDiv && s > 4 * best) {
      stoppedBy = 'divergence';
      break;
    }
  }
  return { lrs, losses, rawLosses, stoppedBy, valley: suggestValley(lrs, losses, requested) };
}

/**
 * fastai's suggestion input: lrs/losses[numIt//10 : −5], cut at the first NaN loss, held as float32
 * tensors (hence the fround, which also makes the suggested lr a float32 value as fastai returns it).
 */
export function suggestValley(lrs: readonly number[], losses: readonly number[], numIt: number): Suggestion | undefined {
  const from = Math.floor(numIt / 10);
  let to = Math.max(from, lrs.length - 5);
  const firstNaN = losses.slice(from, to).findIndex((l) => Number.isNaN(l));
  if (firstNaN >= 0) to = from + firstNaN;
  if (to <= from) return undefined;
  const winLosses = losses.slice(from, to).map(Math.fround);
  const i = valley(winLosses);
  return { lr: Math.fround(lrs[from + i]), index: from + i, loss: winLosses[i] };
}

/**
 * fastai `valley`: lds[i] is the length of the longest strictly decreasing subsequence ending at i;
 * the run ends at the first index with the largest lds and starts lds before it (fastai updates its
 * best end inside the O(n²) loop, which picks the same index); the suggestion lies 1/3 + 1/6 into it.
 */
export function valley(losses: readonly number[]): number {
  const n = losses.length;
  if (n === 0) throw new RangeError('valley needs at least one loss');
  const lds = new Array<number>(n).fill(1);
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) if (losses[i] < losses[j] && lds[i] < lds[j] + 1) lds[i] = lds[j] + 1;
  }
  const longest = Math.max(...lds);
  const maxEnd = lds.indexOf(longest);
  // fastai's start stays at its initial 0 when no loss ever decreases.
  const maxStart = longest > 1 ? maxEnd - longest : 0;
  const sections = (maxEnd - maxStart) / 3;
  const idx = maxStart + Math.trunc(sections) + Math.trunc(sections / 2);
  // A 2-long run from index 0 gives −1, which fastai's Python indexing reads as the last element.
  return idx < 0 ? idx + n : idx;
}

// ---- PNG plot -------------------------------------------------------------------------------------

export interface PlotOptions {
  width?: number;
  height?: number;
  /** Points dropped from the end of the curve (fastai plot_lr_find's skip_end). */
  skipEnd?: number;
}

const BLACK: Rgb = [0, 0, 0];
const GREY: Rgb = [200, 200, 200];
const BLUE: Rgb = [31, 119, 180];
const RED: Rgb = [214, 39, 40];

/** The smoothed loss against lr on a log axis, with the valley suggestion marked, as PNG bytes. */
export function plotLrFind(result: LrFindResult, opts: PlotOptions = {}): Buffer {
  const W = opts.width ?? 720;
  const H = opts.height ?? 480;
  const skip = opts.skipEnd ?? 5;
  const n = Math.max(0, result.lrs.length - skip);
  const pts = result.lrs.slice(0, n).map((lr, i) => [Math.log10(lr), result.losses[i]] as const).filter(([, l]) => Number.isFinite(l));
  const img = new Canvas(W, H);
  const left = 90;
  const right = W - 20;
  const top = 40;
  const bottom = H - 60;

  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  let [x0, x1] = xs.length ? [Math.min(...xs), Math.max(...xs)] : [-7, 1];
  if (x1 - x0 < 1e-9) [x0, x1] = [x0 - 0.5, x1 + 0.5];
  let [y0, y1] = ys.length ? [Math.min(...ys), Math.max(...ys)] : [0, 1];
  const pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.05 || 1;
  [y0, y1] = [y0 - pad, y1 + pad];
  const px = (x: number) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const py = (y: number) => bottom - ((y - y0) / (y1 - y0)) * (bottom - top);

  // Grid and ticks: decades labelled, 2..9 minor ticks on x; 1/2/5 steps on y.
  for (let k = Math.ceil(x0); k <= Math.floor(x1); k++) {
    const x = px(k);
    img.line(x, top, x, bottom, GREY);
    img.line(x, bottom, x, bottom + 6, BLACK);
    const label = `1e${k}`;
    img.text(x - textWidth(label) / 2, bottom + 12, label, BLACK);
  }
  for (let k = Math.floor(x0); k <= Math.ceil(x1); k++) {
    for (let m = 2; m <= 9; m++) {
      const x = k + Math.log10(m);
      if (x > x0 && x < x1) img.line(px(x), bottom, px(x), bottom + 3, BLACK);
    }
  }
  const yticks = ticks(y0, y1, 5);
  const ystep = yticks.length > 1 ? yticks[1] - yticks[0] : 1;
  const decimals = Math.max(0, -Math.floor(Math.log10(ystep)));
  for (const v of yticks) {
    const y = py(v);
    img.line(left, y, right, y, GREY);
    img.line(left - 6, y, left, y, BLACK);
    const label = v.toFixed(decimals);
    img.text(left - 10 - textWidth(label), y - 7, label, BLACK);
  }
  img.line(left, top, left, bottom, BLACK, 2);
  img.line(left, bottom, right, bottom, BLACK, 2);
  img.text((left + right) / 2 - textWidth('Learning Rate') / 2, H - 24, 'Learning Rate', BLACK);
  img.text(10, 12, 'Loss', BLACK);
  img.text((left + right) / 2 - textWidth('lr_find') / 2, 12, 'lr_find', BLACK);

  for (let i = 1; i < pts.length; i++) img.line(px(pts[i - 1][0]), py(pts[i - 1][1]), px(pts[i][0]), py(pts[i][1]), BLUE, 2);
  const v = result.valley;
  if (v) {
    img.circle(px(Math.log10(v.lr)), py(v.loss), 6, RED, 1);
    const label = `valley: ${v.lr.toExponential(2)}`;
    const lx = right - textWidth(label) - 10;
    img.circle(lx - 14, top + 14, 5, RED, 1);
    img.text(lx, top + 7, label, BLACK);
  }

  return img.png();
}
