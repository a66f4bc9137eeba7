/**
 * The demo's verdict: per-output signed changes, the mean standardized RMSE that weighs outputs of
 * different units equally, summary.json's keys, and the comparison report built from two runs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { compareReport, meanSpread } from '../../src/cli/compare.ts';
import { renderComparisonReport, wantsLogScale } from '../../src/tracking/report-html.ts';
import { computeVerdict, signedPercent, verdictSummary, verdictTable } from '../../src/training/verdict.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-verdict-'));
after(() => rmSync(root, { recursive: true, force: true }));

const baseline = [{ name: 'count', rmse: 10, mae: 8 }, { name: 'dist', rmse: 0.2, mae: 0.1 }];
const dann = [{ name: 'count', rmse: 4, mae: 3 }, { name: 'dist', rmse: 0.25, mae: 0.1 }];

test('verdict: signed per-output changes and the mean standardized RMSE', () => {
  const v = computeVerdict(baseline, dann, [8, 0.1]);
  assert.deepEqual(v.rows.map((r) => [r.output, Number(r.rmseChangePct.toFixed(9)), r.maeChangePct]), [['count', -60, -62.5], ['dist', 25, 0]]);
  // count: 10/8 → 4/8; dist: 0.2/0.1 → 0.25/0.1. Means 1.625 → 1.5.
  assert.equal(v.baselineStandardized, (1.25 + 2) / 2);
  assert.equal(v.dannStandardized, (0.5 + 2.5) / 2);
  assert.ok(Math.abs(v.changePct - ((1.5 - 1.625) / 1.625) * 100) < 1e-12);
  assert.equal(v.dannBetter, true);
  // Raw RMSEs would let count dominate; standardized units weigh dist's loss as much as count's gain.
  const worse = computeVerdict(baseline, dann, [100, 0.01]);
  assert.equal(worse.dannBetter, false);
  assert.match(verdictTable(worse), /DANN raises the target error by [0-9.]+% \(worse than source-only\)/);
  assert.throws(() => computeVerdict(baseline, [dann[1], dann[0]], [1, 1]), /output 0 is count for the baseline but dist for DANN/);
  assert.throws(() => computeVerdict(baseline, dann, [1, 0]), /scale of dist must be positive/);
});

test('signed percentages: a real minus for gains, a plus for losses, no sign for zero', () => {
  assert.equal(signedPercent(-45.64), '−45.6%');
  assert.equal(signedPercent(12.34), '+12.3%');
  assert.equal(signedPercent(0.01), '0.0%');
  assert.equal(signedPercent(-0.04), '0.0%');
});

test('summary keys: target_rmse_<output> for DANN, baseline.target_rmse_<output> for source-only', () => {
  const s = verdictSummary(computeVerdict(baseline, dann, [8, 0.1])) as Record<string, number> & { baseline: Record<string, number> };
  assert.equal(s.target_rmse_count, 4);
  assert.equal(s.target_mae_dist, 0.1);
  assert.equal(s.baseline.target_rmse_count, 10);
  assert.equal(s.baseline.target_rmse_dist, 0.2);
  assert.equal(s.target_rmse_standardized_mean, 1.5);
  assert.equal(s.baseline.target_rmse_standardized_mean, 1.625);
  assert.ok(s.target_rmse_standardized_change_pct < 0);
});

test('compare over seeds: mean ± sample sd per side and a per-seed table', () => {
  assert.deepEqual(meanSpread([1, 2, 3]), { mean: 2, sd: 1, min: 1, max: 3 });
  const results = [
    { seed: 0, verdict: computeVerdict(baseline, dann, [8, 0.1]) },
    { seed: 1, verdict: computeVerdict(baseline, baseline.map((b) => ({ ...b, rmse: b.rmse * 2 })), [8, 0.1]) },
  ];
  const md = compareReport(results, { count: 5, dir: 'val', labels: 'val.csv' });
  assert.match(md, /\| count \| 10\.00 ± 0\.000 \| 12\.00 ± 11\.31 \| \+20\.0% ± 113\.1 \|/);
  assert.match(md, /\| 1 \| 1\.625 → 3\.250 \| \+100\.0% \|/);
  assert.match(md, /\*\*Mixed: DANN is better on 1 of 2 seeds/);
});

test('comparison report: headline verdict, per-output target curves, domain accuracy on 0–1 with 0.5 marked, scatter per output', async () => {
  const runs = ['baseline', 'dann'].map((name, j) => {
    const runDir = join(root, name);
    mkdirSync(runDir, { recursive: true });
    const rows = [1, 2, 3].map((epoch) => ({ _step: epoch * 10, epoch, target_rmse_count: 10 - j * epoch, rmse_count: 3, target_rmse_dist: 0.2, rmse_dist: 0.1, ...(j ? { domain_accuracy: 0.9 - 0.1 * epoch } : {}) }));
    writeFileSync(join(runDir, 'metrics.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const truth = Float64Array.from([1, 0.1, 20, 0.3, 11, 0.2]);
    return { name, runDir, evaluation: { outputs: [{ name: 'count' }, { name: 'dist' }], truth, predicted: truth.map((x) => x * (1.1 - 0.05 * j)), count: 3 } };
  });
  const html = await renderComparisonReport({ title: 'demo <test>', verdict: computeVerdict(baseline, dann, [8, 0.1]), runs, seconds: 12 });
  assert.match(html, /<div class="verdict better">DANN lowers the target error by 7\.7%: mean standardized target RMSE 1\.625 \(source-only\) → 1\.500 \(DANN\)<\/div>/);
  assert.match(html, /<td class="better">−60\.0%<\/td>/);
  assert.match(html, /<td class="worse">\+25\.0%<\/td>/);
  for (const title of ['count: target RMSE', 'dist: target RMSE', 'Domain classifier accuracy', 'count: predicted vs true on 3 target images', 'dist: predicted vs true']) assert.ok(html.includes(title), title);
  assert.ok(html.includes('0.5: domains indistinguishable'));
  assert.ok(html.includes('demo &lt;test&gt;'));
  assert.doesNotMatch(html, /<script|src="http|href="http/i);
  // The domain accuracy axis is 0–1 whatever the data: ticks 0 … 1 appear in its chart.
  const domain = html.slice(html.indexOf('Domain classifier accuracy'));
  for (const t of ['>0<', '>0.4<', '>1<']) assert.ok(domain.slice(0, domain.indexOf('</svg>')).includes(t), `tick ${t}`);
  assert.equal(wantsLogScale([0.01, 0.5, 2]), true);
  assert.equal(wantsLogScale([0.4, 0.5, 2]), false);
  assert.equal(wantsLogScale([-1, 0.5, 200]), false);
});
