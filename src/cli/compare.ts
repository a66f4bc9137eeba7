/**
 * `ort-dann compare`: the proof that adaptation helps, or the evidence that it did not. Trains the
 * source-only baseline (--no-domain) and DANN with the same seed, data and budget, evaluates both
 * exported models on the labelled target validation images, and writes a report. Changes are signed
 * (negative = DANN lowers the error). `--seeds 0,1,2` repeats both runs per seed and reports each
 * side's mean and spread, since one seed proves nothing for an adversarial method.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandModule, Options } from 'yargs';
import { ensureDemoData } from '../data/index.ts';
import { UserError } from '../errors.ts';
import { evaluateModel, type Evaluation, writeEvaluation } from '../export/evaluate.ts';
import { openInferenceModel } from '../export/runtime.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { readManifest } from '../onnx/manifest.ts';
import { readTargetScaling } from '../training/standardize.ts';
import { computeVerdict, signedPercent, type Verdict } from '../training/verdict.ts';
import { columnStd, DEMO_DATA, demoArgs, demoArtifacts } from './demo.ts';
import { demoDataDir, without } from './flags.ts';
import { runTrain, trainFlags } from './train.ts';

type Args = Record<string, unknown>;

/** Mean and sample standard deviation (0 for one value). */
export function meanSpread(xs: number[]): { mean: number; sd: number; min: number; max: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
}

export interface SeedResult {
  seed: number;
  verdict: Verdict;
}

/** The markdown report over one or more seeds: per-seed verdicts, then each side's mean ± sd per output. */
export function compareReport(results: SeedResult[], images: { count: number; dir: string; labels: string }): string {
  const g = (x: number) => x.toPrecision(4);
  const ms = (xs: number[]) => { const s = meanSpread(xs); return results.length > 1 ? `${g(s.mean)} ± ${g(s.sd)}` : g(s.mean); };
  const outputs = results[0].verdict.rows.map((r) => r.output);
  const lines = [
    '# Source-only vs DANN on the labelled target images',
    '',
    `Target images: ${images.dir} (${images.count} labelled, labels from ${images.labels}); for each seed both runs share the seed, data and training budget.`,
    `Change = (DANN − source-only) / source-only: negative means DANN lowers the target error.${results.length > 1 ? ` Values are mean ± sample sd over seeds ${results.map((r) => r.seed).join(', ')}.` : ''}`,
    '',
    '| output | source-only RMSE | DANN RMSE | RMSE change | source-only MAE | DANN MAE | MAE change |',
    '|---|---|---|---|---|---|---|',
    ...outputs.map((o, k) => {
      const col = (f: (v: Verdict) => number) => results.map((r) => f(r.verdict));
      const change = (f: (v: Verdict) => number) => { const s = meanSpread(col(f)); return results.length > 1 ? `${signedPercent(s.mean)} ± ${s.sd.toFixed(1)}` : signedPercent(s.mean); };
      return `| ${o} | ${ms(col((v) => v.rows[k].baselineRmse))} | ${ms(col((v) => v.rows[k].dannRmse))} | ${change((v) => v.rows[k].rmseChangePct)} `
        + `| ${ms(col((v) => v.rows[k].baselineMae))} | ${ms(col((v) => v.rows[k].dannMae))} | ${change((v) => v.rows[k].maeChangePct)} |`;
    }),
    '',
    '| seed | mean standardized target RMSE, source-only → DANN | change |',
    '|---|---|---|',
    ...results.map((r) => `| ${r.seed} | ${r.verdict.baselineStandardized.toFixed(3)} → ${r.verdict.dannStandardized.toFixed(3)} | ${signedPercent(r.verdict.changePct)} |`),
    '',
  ];
  const wins = results.filter((r) => r.verdict.dannBetter).length;
  const changes = meanSpread(results.map((r) => r.verdict.changePct));
  lines.push(wins === results.length
    ? `**DANN lowers the mean standardized target RMSE on ${results.length === 1 ? 'this seed' : `all ${results.length} seeds`} (${signedPercent(changes.mean)}${results.length > 1 ? `, worst seed ${signedPercent(changes.max)}` : ''}).**`
    : wins === 0
      ? `**DANN is worse than source-only on ${results.length === 1 ? 'this seed' : `every seed`} (${signedPercent(changes.mean)}).** Adaptation did not help with this budget and these settings.`
      : `**Mixed: DANN is better on ${wins} of ${results.length} seeds (mean change ${signedPercent(changes.mean)}, from ${signedPercent(changes.min)} to ${signedPercent(changes.max)}).**`);
  lines.push('', 'Standardized RMSE divides each output\'s RMSE by the source training labels\' std (the target labels\' std for runs on raw targets). Scatter plots (prediction vs truth): `<seed>/source-only/eval/` and `<seed>/dann/eval/`.', '');
  return lines.join('\n');
}

export function parseSeeds(value: unknown, fallback: number): number[] {
  if (value === undefined) return [fallback];
  const seeds = String(value).split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (seeds.length === 0 || seeds.some((s) => !Number.isSafeInteger(s) || s < 0) || new Set(seeds).size !== seeds.length) {
    throw new UserError(`--seeds ${value}: give distinct non-negative integers separated by commas, e.g. --seeds 0,1,2`);
  }
  return seeds;
}

async function evaluate(runDir: string, targetVal: string, labels: string, threads: unknown): Promise<Evaluation> {
  const modelFile = join(runDir, 'model.onnx');
  if (!existsSync(modelFile)) throw new UserError(`${runDir}: the run stopped before exporting ${modelFile}; rerun compare`);
  const model = await openInferenceModel(modelFile, { threads: threads === undefined ? undefined : Number(threads) });
  try {
    const evaluation = await evaluateModel(model, targetVal, labels);
    await writeEvaluation(evaluation, model.metadata.outputNames, join(runDir, 'eval'));
    return evaluation;
  } finally {
    await model.release();
  }
}

export const compareCommand: CommandModule<object, Args> = {
  command: 'compare',
  describe: 'Train source-only and DANN with the same seed and budget (per seed with --seeds), evaluate both on labelled target images, write a report',
  // Both runs start from scratch in --out-dir, one of them source-only: --resume, --run-dir and --no-domain mean nothing here.
  builder: (y) => y.options(without(trainFlags, 'resume', 'run-dir', 'domain') as Record<string, Options>)
    .option('out-dir', { type: 'string', describe: 'Where the runs and the report go (default runs/compare-<time>)' })
    .option('seeds', { type: 'string', describe: 'Comma-separated seeds, e.g. 0,1,2: both runs per seed, mean and spread per side (default: --seed)' }),
  handler: async (input) => {
    const seeds = parseSeeds(input.seeds, Number(input.seed));
    const outDir = resolve(String(input['out-dir'] ?? join('runs', `compare-${new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '')}`)));
    let args: Args = input;
    if (args.target === undefined) {
      // The built-in demo shift, with the demo's settings and artifacts.
      args = demoArgs(args);
      const artifacts = await demoArtifacts(args);
      const size = readManifest(artifacts).config.imageSize;
      const demo = await ensureDemoData({ out: demoDataDir(size), size, ...DEMO_DATA });
      args = { ...args, 'image-size': undefined, artifacts, target: demo.targetTrain, 'target-val': demo.targetVal, 'target-labels': demo.targetValLabels };
    }
    const targetVal = String(args['target-val']);
    const labels = args['target-labels'] as string | undefined;
    if (!labels) throw new UserError('--target-labels: compare needs labels for the --target-val images to measure target error');
    const results: SeedResult[] = [];
    let count = 0;
    for (const seed of seeds) {
      const seedDir = seeds.length > 1 ? join(outDir, `seed-${seed}`) : outDir;
      const evaluations: Evaluation[] = [];
      for (const [name, domain] of [['source-only', false], ['dann', true]] as const) {
        const runDir = join(seedDir, name);
        process.stdout.write(`\n== ${name}${seeds.length > 1 ? `, seed ${seed}` : ''} ==\n`);
        await runTrain({ ...args, seed, domain, 'run-dir': runDir, 'run-name': `${args['run-name'] ?? 'compare'}-${seed}-${name}` });
        if (process.exitCode) return; // interrupted: the run said how to continue
        evaluations.push(await evaluate(runDir, targetVal, labels, args.threads));
      }
      const outputs = evaluations[1].outputs.map((o) => o.name);
      const scaling = await readTargetScaling(join(seedDir, 'dann', 'latest', 'model.safetensors'), outputs);
      results.push({ seed, verdict: computeVerdict(evaluations[0].outputs, evaluations[1].outputs, scaling?.std ?? columnStd(evaluations[1].truth, outputs.length)) });
      count = evaluations[1].count;
    }
    const markdown = compareReport(results, { count, dir: targetVal, labels });
    await writeFileAtomic(join(outDir, 'report.md'), markdown);
    const json = { seeds: results.map((r) => ({ seed: r.seed, ...r.verdict })), change_pct: meanSpread(results.map((r) => r.verdict.changePct)) };
    await writeFileAtomic(join(outDir, 'report.json'), `${JSON.stringify(json, null, 2)}\n`);
    process.stdout.write(`\n${markdown}\nreport: ${join(outDir, 'report.md')}\n`);
  },
};
