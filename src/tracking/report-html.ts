/**
 * `<runDir>/report.html`: one self-contained page (inline SVG and CSS, no scripts, no network) with the
 * loss, metric and schedule curves W&B would chart, the final values and the config, so a run can be
 * judged without W&B. Rewritten at each epoch end so a running or crashed run still has its plots.
 */
import type { LoopState } from '../training/types.ts';
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
    const step = row._step;
    if (typeof step !== 'number') return;
    for (const [k, v] of Object.entries(row)) {
      if (k.startsWith('_') || typeof v !== 'number') continue;
      let s = this.series.get(k);
      if (!s) this.series.set(k, (s = new Series()));
      s.add(step, v);
      this.latest.set(k, v);
    }
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

interface Chart {
  title: string;
  keys: string[];
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
  const charts = [
    group('Losses', (k) => k.endsWith('_loss')),
    group('RMSE per output (source validation)', (k) => k.startsWith('rmse_')),
    group('Target-domain errors', (k) => k.startsWith('target_')),
    group('Domain classifier accuracy', (k) => k === 'domain_accuracy'),
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

function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e');
  return String(Number(v.toPrecision(4)));
}

function svgChart(chart: Chart, series: Map<string, Series>): string {
  const W = 720;
  const H = 260;
  const m = { l: 64, r: 16, t: 16, b: 32 };
  const lines = chart.keys.map((k, i) => ({ key: k, color: COLORS[i % COLORS.length], pts: series.get(k)!.points() }));
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
  if (y0 === y1) [y0, y1] = [y0 - (Math.abs(y0) || 1) * 0.1, y1 + (Math.abs(y1) || 1) * 0.1];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (n: number) => n.toFixed(1);
  const parts: string[] = [];
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${f(sy(t))}" y2="${f(sy(t))}" class="grid"/>`);
    parts.push(`<text x="${m.l - 6}" y="${f(sy(t) + 4)}" text-anchor="end">${formatNumber(t)}</text>`);
  }
  for (const t of niceTicks(x0, x1)) {
    parts.push(`<line x1="${f(sx(t))}" x2="${f(sx(t))}" y1="${m.t}" y2="${H - m.b}" class="grid"/>`);
    parts.push(`<text x="${f(sx(t))}" y="${H - m.b + 16}" text-anchor="middle">${formatNumber(t)}</text>`);
  }
  parts.push(`<text x="${W - m.r}" y="${H - 4}" text-anchor="end" class="axis">step</text>`);
  for (const { key, color, pts: [xs, ys] } of lines) {
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
    parts.push(`<path d="${d}" stroke="${color}" fill="none" stroke-width="1.5"><title>${escapeHtml(key)}</title></path>`);
    if (xs.length <= 60) {
      xs.forEach((x, i) => {
        if (Number.isFinite(ys[i])) parts.push(`<circle cx="${f(sx(x))}" cy="${f(sy(ys[i]))}" r="2.5" fill="${color}"><title>${escapeHtml(key)} @ ${x}: ${formatNumber(ys[i])}</title></circle>`);
      });
    }
  }
  const legend = lines.map(({ key, color }) => `<span><i style="background:${color}"></i>${escapeHtml(key)}</span>`).join('');
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
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:20px;margin:0 0 4px} .meta{color:#666;margin-bottom:16px}
.charts{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px}
figcaption{font-weight:600;margin-bottom:4px} .legend span{margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font-size:11px;fill:#555} .grid{stroke:#eee} .axis{fill:#999}
table{border-collapse:collapse;margin-top:8px} th,td{border-bottom:1px solid #eee;padding:3px 10px;text-align:left;font-weight:normal}
th{color:#555} h2{font-size:16px;margin-top:24px} .empty{color:#999}
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
