/**
 * The answer to "did DANN help?": target-domain RMSE and MAE per output, source-only baseline →
 * DANN, signed change. Outputs of different units are put on one scale by dividing each RMSE by a
 * per-output scale (the source training labels' std, the units the loss was trained in), so the
 * headline figure, the mean standardized target RMSE, weighs every output equally.
 */

export interface TargetErrors {
  name: string;
  rmse: number;
  mae: number;
}

export interface VerdictRow {
  output: string;
  baselineRmse: number;
  dannRmse: number;
  /** (DANN − baseline) / baseline × 100: negative is better. */
  rmseChangePct: number;
  baselineMae: number;
  dannMae: number;
  maeChangePct: number;
  /** Divides this output's RMSE into standardized units. */
  scale: number;
}

export interface Verdict {
  rows: VerdictRow[];
  /** Mean over outputs of RMSE / scale. */
  baselineStandardized: number;
  dannStandardized: number;
  /** Change of the mean standardized RMSE in %, negative when DANN is better. */
  changePct: number;
  dannBetter: boolean;
}

const pct = (before: number, after: number) => ((after - before) / before) * 100;

export function computeVerdict(baseline: TargetErrors[], dann: TargetErrors[], scale: number[]): Verdict {
  if (baseline.length !== dann.length || baseline.length !== scale.length || baseline.length === 0) {
    throw new Error(`computeVerdict: ${baseline.length} baseline outputs, ${dann.length} DANN outputs, ${scale.length} scales`);
  }
  const rows = baseline.map((b, k): VerdictRow => {
    const d = dann[k];
    if (d.name !== b.name) throw new Error(`computeVerdict: output ${k} is ${b.name} for the baseline but ${d.name} for DANN`);
    if (!(scale[k] > 0)) throw new Error(`computeVerdict: scale of ${b.name} must be positive, got ${scale[k]}`);
    return {
      output: b.name, baselineRmse: b.rmse, dannRmse: d.rmse, rmseChangePct: pct(b.rmse, d.rmse),
      baselineMae: b.mae, dannMae: d.mae, maeChangePct: pct(b.mae, d.mae), scale: scale[k],
    };
  });
  const mean = (f: (r: VerdictRow) => number) => rows.reduce((s, r) => s + f(r), 0) / rows.length;
  const baselineStandardized = mean((r) => r.baselineRmse / r.scale);
  const dannStandardized = mean((r) => r.dannRmse / r.scale);
  const changePct = pct(baselineStandardized, dannStandardized);
  return { rows, baselineStandardized, dannStandardized, changePct, dannBetter: changePct < 0 };
}

/** "+12.3%" or "−45.6%" (a real minus sign), so a worse result never reads as a gain. */
export function signedPercent(p: number, digits = 1): string {
  if (!Number.isFinite(p)) return String(p);
  const text = Math.abs(p).toFixed(digits);
  if (Number(text) === 0) return `${text}%`;
  return `${p < 0 ? '−' : '+'}${text}%`;
}

/** One sentence: which side wins on the mean standardized target RMSE, and by how much. */
export function verdictHeadline(v: Verdict): string {
  const size = Math.abs(v.changePct).toFixed(1);
  const how = Number(size) === 0 ? 'DANN does not change the target error' : v.dannBetter ? `DANN lowers the target error by ${size}%` : `DANN raises the target error by ${size}% (worse than source-only)`;
  return `${how}: mean standardized target RMSE ${v.baselineStandardized.toFixed(3)} (source-only) → ${v.dannStandardized.toFixed(3)} (DANN)`;
}

/** The verdict as a fixed-width text table for the terminal. */
export function verdictTable(v: Verdict): string {
  const g = (x: number) => x.toPrecision(4);
  const header = ['output', 'target RMSE source-only → DANN', 'change', 'target MAE source-only → DANN', 'change'];
  const body = v.rows.map((r) => [r.output, `${g(r.baselineRmse)} → ${g(r.dannRmse)}`, signedPercent(r.rmseChangePct), `${g(r.baselineMae)} → ${g(r.dannMae)}`, signedPercent(r.maeChangePct)]);
  body.push(['mean standardized', `${v.baselineStandardized.toFixed(3)} → ${v.dannStandardized.toFixed(3)}`, signedPercent(v.changePct), '', '']);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) => cells.map((x, c) => x.padEnd(widths[c])).join('  ').trimEnd();
  return [line(header), ...body.map(line), '', verdictHeadline(v)].join('\n');
}

/**
 * summary.json's verdict keys: `target_rmse_<output>` / `target_mae_<output>` for DANN, the same
 * inside `baseline` for source-only (so `.baseline.target_rmse_<output>`), the mean standardized RMSE
 * of each and the signed change.
 */
export function verdictSummary(v: Verdict): Record<string, number | Record<string, number>> {
  const dann: Record<string, number> = {};
  const baseline: Record<string, number> = {};
  for (const r of v.rows) {
    dann[`target_rmse_${r.output}`] = r.dannRmse;
    dann[`target_mae_${r.output}`] = r.dannMae;
    baseline[`target_rmse_${r.output}`] = r.baselineRmse;
    baseline[`target_mae_${r.output}`] = r.baselineMae;
  }
  dann.target_rmse_standardized_mean = v.dannStandardized;
  baseline.target_rmse_standardized_mean = v.baselineStandardized;
  return { ...dann, target_rmse_standardized_change_pct: v.changePct, baseline };
}
