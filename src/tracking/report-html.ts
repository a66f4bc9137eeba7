/**
 * `<runDir>/report.html`: one self-contained page (inline SVG and CSS, no scripts, no network) with the
 * loss, metric and schedule curves W&B would chart, the final values and the config, so a run can be
 * judged without W&B. Rewritten at each epoch end so a running or crashed run still has its plots.
 *
 * The x axis is the epoch (fastai's fractional epoch for step values), so the validation after the
 * epoch the console prints as "epoch 3/5" sits at x = 3. Each output gets its own panel (outputs of
 * different units would flatten each other on one axis), domain accuracy is drawn on 0–1 with the
 * 0.5 equilibrium marked, and losses spanning decades use a log axis.
 *
 * `renderComparisonReport` is the demo's page: the verdict first, then baseline and DANN curves per
 * output and predicted-vs-true scatter plots of the target validation images.
 */
import type { LoopState } from '../training/types.ts';
import { signedPercent, verdictHeadline, type Verdict } from '../training/verdict.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseWandbJson } from './extended-json.ts';
import type { Clock, Row } from './history.ts';
import { ScalarRowsCallback } from './metrics-jsonl.ts';
import type { Reporter } from './reporter.ts';
import { LatestWriter } from './latest-writer.ts';

/** Points kept per curve; longer runs are thinned evenly, so memory stays bounded. */
const MAX_POINTS = 2000;

class Series {
  xs: number[] = [];
  ys: number[] = [];
  private stride = 1;
  private seen = 0;
  last: [number, number] | undefined;

  add(x: number, y: number): void {
    this.last = [x, y];
    if (this.seen++ % this.stride !== 0) return;
    this.xs.push(x);
    this.ys.push(y);
    if (this.xs.length > MAX_POINTS) {
      this.xs = this.xs.filter((_, i) => i % 2 === 0);
      this.ys = this.ys.filter((_, i) => i % 2 === 0);
      this.stride *= 2;
    }
  }

  /** The kept points plus the latest one, so the curve always reaches the current step. */
  points(): [number[], number[]] {
    if (!this.last || this.xs[this.xs.length - 1] === this.last[0]) return [this.xs, this.ys];
    return [[...this.xs, this.last[0]], [...this.ys, this.last[1]]];
  }
}

export interface ReportInfo {
  title: string;
  runUrl?: string;
  mode: string;
  startedAt: string;
  config: Record<string, unknown>;
}

export class ReportCallback extends ScalarRowsCallback {
  readonly name = 'report-html';
  private readonly series = new Map<string, Series>();
  private readonly latest = new Map<string, number>();
  private readonly writer: LatestWriter;

  constructor(readonly path: string, private readonly info: ReportInfo, clock: Clock, startMs: number, reporter: Reporter) {
    super(clock, startMs, reporter);
    this.writer = new LatestWriter((p, e) => reporter.warnOnce(`write-${p}`, `cannot write ${p} (${e.message})`));
  }

  /** Rows from before this process (a resumed run's metrics.jsonl). */
  seed(rows: Row[]): void {
    for (const row of rows) this.onRow(row);
  }

  protected onRow(row: Row): void {
    addRow(row, this.series, this.latest);
  }

  override afterEpoch(s: LoopState): Promise<void> {
    super.afterEpoch(s);
    return this.write();
  }

  override afterFit(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.history.flush();
    await this.write();
  }

  private write(): Promise<void> {
    this.writer.write(this.path, renderReport(this.info, this.series, this.latest));
    return this.writer.flush();
  }
}

/** Adds a metrics row's numbers to their series, at x = the row's epoch (its step when it has none). */
function addRow(row: Row, series: Map<string, Series>, latest?: Map<string, number>): void {
  const x = typeof row.epoch === 'number' ? row.epoch : row._step;
  if (typeof x !== 'number') return;
  for (const [k, v] of Object.entries(row)) {
    if (k.startsWith('_') || typeof v !== 'number') continue;
    let s = series.get(k);
    if (!s) series.set(k, (s = new Series()));
    s.add(x, v);
    latest?.set(k, v);
  }
}

interface Chart {
  title: string;
  keys: string[];
  /** Fixed y range instead of the data's (e.g. [0, 1] for accuracies). */
  yRange?: [number, number];
  /** A dashed horizontal reference line, e.g. 0.5 for a domain classifier that cannot tell the domains apart. */
  reference?: { y: number; label: string };
  /** Log y axis: chosen for positive curves spanning more than a decade. */
  log?: boolean;
  /** Display names of the keys in the legend. */
  labels?: Record<string, string>;
  /** Per-key colour (default: the palette in key order) and dashed keys. */
  colors?: Record<string, string>;
  dashed?: string[];
}

/** Groups curves the way one would read them: losses together, each metric family, then the schedules. */
export function chartGroups(keys: string[]): Chart[] {
  const taken = new Set<string>();
  const group = (title: string, test: (k: string) => boolean): Chart => {
    const ks = keys.filter((k) => !taken.has(k) && test(k)).sort();
    ks.forEach((k) => taken.add(k));
    return { title, keys: ks };
  };
  const hidden = (k: string) => k === 'epoch' || /^(sqr_mom|eps)_\d+$/.test(k);
  keys.filter(hidden).forEach((k) => taken.add(k));
  const outputs = keys.filter((k) => k.startsWith('rmse_')).map((k) => k.slice(5)).sort();
  const charts = [
    group('Losses', (k) => k.endsWith('_loss')),
    ...outputs.map((o) => group(`${o}: RMSE (source validation) and target errors`, (k) => k === `rmse_${o}` || k === `target_rmse_${o}` || k === `target_mae_${o}`)),
    group('Target-domain errors', (k) => k.startsWith('target_')),
    { ...group('Domain classifier accuracy', (k) => k === 'domain_accuracy'), yRange: [0, 1] as [number, number], reference: { y: 0.5, label: '0.5: domains indistinguishable' } },
    group('Learning rate per group', (k) => /^lr_\d+$/.test(k)),
    group('Momentum per group', (k) => /^mom_\d+$/.test(k)),
    group('Weight decay per group', (k) => /^wd_\d+$/.test(k)),
    group('GRL alpha', (k) => k === 'alpha'),
  ];
  for (const k of keys.filter((k) => !taken.has(k)).sort()) charts.push({ title: k, keys: [k] });
  return charts.filter((c) => c.keys.length > 0);
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Round tick positions covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo;
  if (!(span > 0) || !Number.isFinite(span)) return [lo];
  const raw = span / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  const ticks: number[] = [];
  // Integer multiples of the step, rounded, so labels read 0.6 rather than 0.6000000000000001.
  for (let k = Math.ceil(lo / step); k * step <= hi + step * 1e-9; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

/** Ticks of a log10 axis given in log10 units: 1, 2 and 5 times each power of ten inside [lo, hi] (powers only past 3 decades). */
function logTicks(lo: number, hi: number): number[] {
  const mantissas = hi - lo > 3 ? [1] : [1, 2, 5];
  const ticks: number[] = [];
  for (let p = Math.floor(lo); p <= Math.ceil(hi); p++) {
    for (const m of mantissas) {
      const t = p + Math.log10(m);
      if (t >= lo && t <= hi) ticks.push(t);
    }
  }
  return ticks;
}

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(4)));
}

/** Whether positive values spanning more than a decade should be drawn on a log axis. */
export function wantsLogScale(values: number[]): boolean {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length > 1 && finite.every((v) => v > 0) && Math.max(...finite) / Math.min(...finite) > 20;
}

function svgChart(chart: Chart, series: Map<string, Series>, xLabel = 'epoch'): string {
  const W = 560;
  const H = 240;
  const m = { l: 64, r: 16, t: 16, b: 32 };
  const log = chart.log ?? (chart.title === 'Losses' && wantsLogScale(chart.keys.flatMap((k) => series.get(k)!.points()[1])));
  const ty = (v: number) => (log ? (v > 0 ? Math.log10(v) : NaN) : v);
  const lines = chart.keys.map((k, i) => {
    const [xs, ys] = series.get(k)!.points();
    return { key: k, color: chart.colors?.[k] ?? COLORS[i % COLORS.length], dash: chart.dashed?.includes(k) ?? false, pts: [xs, ys.map(ty)] as [number[], number[]] };
  });
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const { pts: [xs, ys] } of lines) {
    xs.forEach((x, i) => {
      if (!Number.isFinite(ys[i])) return;
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, ys[i]);
      y1 = Math.max(y1, ys[i]);
    });
  }
  if (!Number.isFinite(x0)) return `<p class="empty">${escapeHtml(chart.title)}: no finite values yet</p>`;
  if (x0 === x1) [x0, x1] = [x0 - 1, x1 + 1];
  if (chart.yRange) {
    [y0, y1] = chart.yRange;
  } else {
    if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.1, y1 + (Math.abs(y1) || 1) * 0.1];
    const pad = (y1 - y0) * 0.05;
    [y0, y1] = [y0 - pad, y1 + pad];
  }
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (n: number) => n.toFixed(1);
  const parts: string[] = [];
  const yTicks = log ? logTicks(y0, y1) : niceTicks(y0, y1);
  for (const t of yTicks) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${f(sy(t))}" y2="${f(sy(t))}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${f(sy(t) + 4)}" text-anchor="end">${formatNumber(log ? 10 ** t : t)}</text>`);
  }
  if (chart.reference) {
    const y = f(sy(chart.reference.y));
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" class="ref"/><text x="${W - m.r - 4}" y="${Number(y) - 4}" text-anchor="end" class="ref">${escapeHtml(chart.reference.label)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${m.t}" y2="${H - m.b}" class="grid"/>`);
    parts.push(`<text x="${f(sx(t))}" y="${H - m.b + 16}" text-anchor="middle">${formatNumber(t)}</text>`);
  }
  parts.push(`<text x="${W - m.r}" y="${H - 4}" text-anchor="end" class="axis">${escapeHtml(xLabel)}${log ? ' · log y' : ''}</text>`);
  for (const { key, color, dash, pts: [xs, ys] } of lines) {
    // Non-finite values (a diverged loss) break the curve instead of dragging it off the chart.
    let d = '';
    let pen = false;
    xs.forEach((x, i) => {
      if (!Number.isFinite(ys[i])) {
        pen = false;
        return;
      }
      d += `${pen ? 'L' : 'M'}${f(sx(x))} ${f(sy(ys[i]))}`;
      pen = true;
    });
    parts.push(`<path d="${d}" stroke="${color}" fill="none" stroke-width="1.5"${dash ? ' stroke-dasharray="5 3"' : ''}><title>${escapeHtml(chart.labels?.[key] ?? key)}</title></path>`);
    if (xs.length <= 60) {
      xs.forEach((x, i) => {
        if (Number.isFinite(ys[i])) parts.push(`<circle cx="${f(sx(x))}" cy="${f(sy(ys[i]))}" r="2.5" fill="${color}"><title>${escapeHtml(key)} @ ${xLabel} ${formatNumber(x)}: ${formatNumber(log ? 10 ** ys[i] : ys[i])}</title></circle>`);
      });
    }
  }
  const legend = lines.map(({ key, color, dash }) => `<span><i style="background:${color}${dash ? ';opacity:.45' : ''}"></i>${escapeHtml(chart.labels?.[key] ?? key)}${dash ? ' (dashed)' : ''}</span>`).join('');
  return `<figure><figcaption>${escapeHtml(chart.title)}</figcaption><div class="legend">${legend}</div>` +
    `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(chart.title)}">${parts.join('')}</svg></figure>`;
}

function flatten(obj: Record<string, unknown>, prefix = '', out: [string, string][] = []): [string, string][] {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) flatten(v as Record<string, unknown>, key, out);
    else {
      const text = typeof v === 'number' ? formatNumber(v) : JSON.stringify(v) ?? String(v);
      out.push([key, text.length > 200 ? `${text.slice(0, 199)}…` : text]);
    }
  }
  return out;
}

function renderReport(info: ReportInfo, series: Map<string, Series>, latest: Map<string, number>): string {
  const charts = chartGroups([...series.keys()]).map((c) => svgChart(c, series)).join('\n');
  const row = (k: string, v: string) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`;
  const finals = [...latest.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => row(k, formatNumber(v))).join('');
  const config = flatten(info.config).map(([k, v]) => row(k, v)).join('');
  const link = info.runUrl ? ` · <a href="${escapeHtml(info.runUrl)}">W&amp;B run</a>` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(info.title)}</title>
<style>
${STYLE}
</style></head><body>
<h1>${escapeHtml(info.title)}</h1>
<div class="meta">started ${escapeHtml(info.startedAt)} · W&amp;B ${escapeHtml(info.mode)}${link} · updated ${escapeHtml(new Date().toISOString())}</div>
<div class="charts">
${charts || '<p class="empty">No metrics logged yet.</p>'}
</div>
<h2>Latest values</h2><table>${finals}</table>
<h2>Config</h2><table>${config}</table>
</body></html>
`;
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:20px;margin:0 0 4px} .meta{color:#666;margin-bottom:16px}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start} figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px;max-width:560px} .legend{max-width:560px} .legend span{margin-right:12px;font-size:12px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-size:11px;fill:#555} .grid{stroke:#eee} .axis{fill:#999} line.ref{stroke:#d62728;stroke-dasharray:5 4} text.ref{fill:#d62728}
table{border-collapse:collapse;margin-top:8px} th,td{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;font-weight:normal}
th{color:#555} h2{font-size:16px;margin-top:24px} .empty{color:#999}
.verdict{font-size:18px;font-weight:600;padding:12px 16px;border-radius:6px;margin:8px 0 16px}
.better{background:#e6f4ea;color:#1e6b34} .worse{background:#fce8e6;color:#a50e0e}
td.better,td.worse{font-weight:600;background:none}`;

/** One run of a comparison: its name, directory (metrics.jsonl) and evaluation on the labelled target images. */
export interface ComparedRun {
  name: string;
  runDir: string;
  evaluation: { outputs: { name: string }[]; truth: Float64Array; predicted: Float64Array; count: number };
}

export interface ComparisonReport {
  title: string;
  verdict: Verdict;
  /** [baseline, DANN]. */
  runs: ComparedRun[];
  seconds?: number;
}

/** Predicted-vs-true scatter of one output for every run, with the y = x line. */
function svgScatter(title: string, k: number, runs: ComparedRun[]): string {
  const W = 360;
  const H = 360;
  const m = { l: 56, r: 12, t: 12, b: 36 };
  const K = runs[0].evaluation.outputs.length;
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of runs) {
    const { truth, predicted, count } = r.evaluation;
    for (let i = 0; i < count; i++) for (const v of [truth[i * K + k], predicted[i * K + k]]) if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  }
  if (!(hi > lo)) [lo, hi] = [lo - 1, lo + 1];
  const pad = (hi - lo) * 0.04;
  [lo, hi] = [lo - pad, hi + pad];
  const sx = (v: number) => m.l + ((v - lo) / (hi - lo)) * (W - m.l - m.r);
  const sy = (v: number) => H - m.b - ((v - lo) / (hi - lo)) * (H - m.t - m.b);
  const f = (n: number) => n.toFixed(1);
  const parts: string[] = [];
  for (const t of niceTicks(lo, hi)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${f(sy(t))}" y2="${f(sy(t))}" class="grid"/><text x="${m.l - 6}" y="${f(sy(t) + 4)}" text-anchor="end">${formatNumber(t)}</text>`);
    parts.push(`<line x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${m.t}" y2="${H - m.b}" class="grid"/><text x="${f(sx(t))}" y="${H - m.b + 16}" text-anchor="middle">${formatNumber(t)}</text>`);
  }
  parts.push(`<line x1="${f(sx(lo))}" y1="${f(sy(lo))}" x2="${f(sx(hi))}" y2="${f(sy(hi))}" class="ref"/>`);
  parts.push(`<text x="${W - m.r}" y="${H - 4}" text-anchor="end" class="axis">true</text><text x="${m.l}" y="${m.t + 10}" class="axis">predicted</text>`);
  runs.forEach((r, j) => {
    const { truth, predicted, count } = r.evaluation;
    const color = COLORS[j % COLORS.length];
    for (let i = 0; i < count; i++) {
      const [x, y] = [truth[i * K + k], predicted[i * K + k]];
      if (Number.isFinite(x) && Number.isFinite(y)) parts.push(`<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="2" fill="${color}" fill-opacity="0.55"/>`);
    }
  });
  const legend = runs.map((r, j) => `<span><i style="background:${COLORS[j % COLORS.length]}"></i>${escapeHtml(r.name)}</span>`).join('') + '<span>dashed: predicted = true</span>';
  return `<figure><figcaption>${escapeHtml(title)}</figcaption><div class="legend">${legend}</div>`
    + `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${escapeHtml(title)}">${parts.join('')}</svg></figure>`;
}

/** A run's metrics.jsonl as series by key (x = epoch); empty when the file is missing. */
async function readRunSeries(runDir: string): Promise<Map<string, Series>> {
  const series = new Map<string, Series>();
  const text = await readFile(join(runDir, 'metrics.jsonl'), 'utf8').catch(() => '');
  for (const line of text.split('\n')) if (line.trim()) addRow(parseWandbJson(line) as Row, series);
  return series;
}

/** The demo's page: verdict, per-output target curves of both runs, domain accuracy, scatter plots. */
export async function renderComparisonReport(r: ComparisonReport): Promise<string> {
  const v = r.verdict;
  const perRun = await Promise.all(r.runs.map((run) => readRunSeries(run.runDir)));
  // One series map holding both runs' curves under prefixed keys, so one chart can overlay them.
  const merged = new Map<string, Series>();
  const labels: Record<string, string> = {};
  perRun.forEach((series, j) => {
    for (const [k, s] of series) {
      merged.set(`${j}:${k}`, s);
      labels[`${j}:${k}`] = `${r.runs[j].name} ${k}`;
    }
  });
  // Colour by run, line style by domain: solid target, dashed source validation.
  const colors: Record<string, string> = {};
  for (const k of merged.keys()) colors[k] = COLORS[Number(k.split(':')[0]) % COLORS.length];
  const dashed = [...merged.keys()].filter((k) => /^\d+:rmse_/.test(k) || k.endsWith(':domain_loss'));
  const charts: Chart[] = [];
  for (const row of v.rows) {
    const keys = r.runs.flatMap((_, j) => [`${j}:target_rmse_${row.output}`, `${j}:rmse_${row.output}`]).filter((k) => merged.has(k));
    charts.push({ title: `${row.output}: target RMSE (solid) and source validation RMSE (dashed) per epoch`, keys, labels, colors, dashed });
  }
  // The domain head trains in the DANN run only (the last); the baseline's would be noise.
  const dannIndex = r.runs.length - 1;
  const domainKeys = [`${dannIndex}:domain_accuracy`].filter((k) => merged.has(k));
  if (domainKeys.length > 0) charts.push({ title: 'Domain classifier accuracy (validation)', keys: domainKeys, labels, colors, yRange: [0, 1], reference: { y: 0.5, label: '0.5: domains indistinguishable' } });
  const lossKeys = [...r.runs.map((_, j) => `${j}:regression_loss`), `${dannIndex}:domain_loss`].filter((k) => merged.has(k));
  if (lossKeys.length > 0) charts.push({ title: 'Losses', keys: lossKeys, labels, colors, dashed });
  const cls = (p: number) => { const text = signedPercent(p); return text.startsWith('−') ? 'better' : text.startsWith('+') ? 'worse' : ''; };
  const g = (x: number) => escapeHtml(String(Number(x.toPrecision(4))));
  const rows = v.rows.map((row) => `<tr><th>${escapeHtml(row.output)}</th><td>${g(row.baselineRmse)}</td><td>${g(row.dannRmse)}</td><td class="${cls(row.rmseChangePct)}">${signedPercent(row.rmseChangePct)}</td>`
    + `<td>${g(row.baselineMae)}</td><td>${g(row.dannMae)}</td><td class="${cls(row.maeChangePct)}">${signedPercent(row.maeChangePct)}</td></tr>`).join('');
  const mean = `<tr><th>mean standardized RMSE</th><td>${v.baselineStandardized.toFixed(3)}</td><td>${v.dannStandardized.toFixed(3)}</td><td class="${cls(v.changePct)}">${signedPercent(v.changePct)}</td><td></td><td></td><td></td></tr>`;
  const n = r.runs[r.runs.length - 1].evaluation.count;
  const scatters = v.rows.map((row, k) => svgScatter(`${row.output}: predicted vs true on ${n} target images`, k, r.runs)).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(r.title)}</title>
<style>
${STYLE}
</style></head><body>
<h1>${escapeHtml(r.title)}</h1>
<div class="meta">${r.runs.map((run) => `${escapeHtml(run.name)}: ${escapeHtml(run.runDir)}`).join(' · ')}${r.seconds !== undefined ? ` · ${r.seconds.toFixed(0)} s in all` : ''} · written ${escapeHtml(new Date().toISOString())}</div>
<div class="verdict ${v.dannBetter ? 'better' : 'worse'}">${escapeHtml(verdictHeadline(v))}</div>
<table><tr><th>output</th><th>target RMSE ${escapeHtml(r.runs[0].name)}</th><th>target RMSE ${escapeHtml(r.runs[1].name)}</th><th>change</th><th>target MAE ${escapeHtml(r.runs[0].name)}</th><th>target MAE ${escapeHtml(r.runs[1].name)}</th><th>change</th></tr>${rows}${mean}</table>
<p class="meta">Target errors of each exported model on all ${n} labelled target validation images (labels used for this report only, never for training). Standardized RMSE divides each output's RMSE by the source training labels' standard deviation. Epoch k on the charts is the validation after the k-th epoch, as the console numbers it.</p>
<h2>Predicted vs true (target validation)</h2>
<div class="charts">
${scatters}
</div>
<h2>Curves</h2>
<div class="charts">
${charts.map((c) => svgChart(c, merged)).join('\n')}
</div>
</body></html>
`;
}

export async function writeComparisonReport(path: string, r: ComparisonReport): Promise<void> {
  await writeFileAtomic(path, await renderComparisonReport(r));
}
