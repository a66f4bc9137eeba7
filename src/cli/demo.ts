/**
 * The built-in demo, what `ort-dann train` does with no data flags: it trains the source-only
 * baseline and DANN on the demo domain shift (src/data/demo.ts) with the same seed, data and budget,
 * evaluates both exported models on every labelled target validation image and ends with one
 * verdict (target RMSE and MAE per output, baseline → DANN, signed change).
 *
 *   runs/<name>/baseline/   the source-only run (--no-domain), a complete run directory
 *   runs/<name>/dann/       the DANN run; dann/model.onnx is the model to use
 *   runs/<name>/summary.json  target_rmse_<output> (DANN), baseline.target_rmse_<output>, the change
 *   runs/<name>/report.html   the verdict, both runs' curves and predicted-vs-true scatter plots
 *
 * The demo's settings (DEMO_SETTINGS) replace the seed's defaults for every flag left at its default.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ensureDemoData, type DemoData } from '../data/index.ts';
import { UserError } from '../errors.ts';
import { evaluateModel, type Evaluation, writeEvaluation } from '../export/evaluate.ts';
import { openInferenceModel } from '../export/runtime.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { readManifest } from '../onnx/manifest.ts';
import { readTargetScaling } from '../training/standardize.ts';
import { computeVerdict, verdictSummary, verdictTable, type Verdict } from '../training/verdict.ts';
import { writeComparisonReport } from '../tracking/report-html.ts';
import { buildArtifacts } from '../model/build-artifacts.ts';
import { makeConfig } from '../model/config.ts';
import { defaultArtifactsDir } from './build-artifacts.ts';

type Args = Record<string, unknown>;

/**
 * The demo's budget, chosen so both runs and the artifact build fit in 5 minutes on 2 cores and DANN
 * clearly wins on seeds 0, 1 and 2 (measured figures: README, "Demo"). Random initial weights (the demo
 * downloads nothing), so the body trains from the first step at the head's rate.
 */
export const DEMO_SETTINGS = {
  backbone: 'resnet18' as const,
  'image-size': 100,
  'batch-size': 16,
  'source-size': 384,
  'val-size': 64,
  epochs: 5,
  'freeze-epochs': 0,
  lr: '2e-3',
  'lr-mult': 1,
  'lambda-domain': 0.1,
};

/** The demo data: fewer target images than demo-data's defaults (generation counts in the 5 minutes), no source folder (the simulator is the source). */
export const DEMO_DATA = { seed: 0, train: 600, val: 250, sourceVal: 0 };

/** The yargs defaults of the train flags the demo overrides (a flag still at its default gets the demo's value). */
const SEED_DEFAULTS: Record<string, unknown> = { 'freeze-epochs': 1, lr: '2e-3', 'lr-mult': 100, 'lambda-domain': 0.1 };

export function demoArgs(a: Args): Args {
  const out: Args = { ...a };
  for (const [k, v] of Object.entries(DEMO_SETTINGS)) {
    if (k === 'backbone') continue;
    if (out[k] === undefined || (k in SEED_DEFAULTS && out[k] === SEED_DEFAULTS[k])) out[k] = v;
  }
  return out;
}

export interface DemoRun {
  name: 'baseline' | 'dann';
  runDir: string;
  evaluation: Evaluation;
}

/** Runs the demo; `runTrain` is train.ts's single-run entry (passed in to keep the import one-way). */
export async function runDemo(a: Args, runTrain: (a: Args) => Promise<void>): Promise<void> {
  const started = performance.now();
  const args = demoArgs(a);
  const runName = (a['run-name'] as string | undefined) ?? new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  if (!/^[\w.-]+$/.test(runName)) throw new UserError(`--run-name ${runName}: use letters, digits, '.', '_' and '-' only`);
  const outDir = resolve(String(a['run-dir'] ?? join('runs', runName)));
  if (existsSync(join(outDir, 'summary.json')) || existsSync(join(outDir, 'dann')) || existsSync(join(outDir, 'baseline'))) {
    throw new UserError(`--run-dir ${outDir} already holds a demo; choose another --run-name (the demo always trains both runs from the start)`);
  }
  const artifacts = await demoArtifacts(args);
  const S = readManifest(artifacts).config.imageSize;
  const demoDir = join('data', `demo-${S}px`);
  process.stdout.write(`demo: no --target given, so the built-in domain shift (${demoDir}): source-only baseline, then DANN, same seed and budget\n`);
  const data = await ensureDemoData({ out: demoDir, size: S, ...DEMO_DATA });
  const runs: DemoRun[] = [];
  for (const [name, domain] of [['baseline', false], ['dann', true]] as const) {
    const runDir = join(outDir, name);
    process.stdout.write(`\n== ${name === 'baseline' ? 'source-only baseline (--no-domain)' : 'DANN'} ==\n`);
    await runTrain({
      ...args, 'image-size': undefined, artifacts, domain, 'run-dir': runDir, 'run-name': `${runName}-${name}`,
      target: data.targetTrain, 'target-val': data.targetVal, 'target-labels': data.targetValLabels,
    });
    const modelFile = join(runDir, 'model.onnx');
    // An interrupted or failed run has set the exit code and said why; there is nothing to compare.
    if (process.exitCode || !existsSync(modelFile)) return;
    runs.push({ name, runDir, evaluation: await evaluateDemoModel(modelFile, data, runDir, args) });
  }
  const [baseline, dann] = runs;
  const outputs = dann.evaluation.outputs.map((o) => o.name);
  // Standardized units are the loss's own: the source training labels' std (the target labels' std for a raw run).
  const scaling = await readTargetScaling(join(dann.runDir, 'best', 'model.safetensors'), outputs).catch(() => undefined)
    ?? await readTargetScaling(join(dann.runDir, 'latest', 'model.safetensors'), outputs);
  const scale = scaling?.std ?? columnStd(dann.evaluation.truth, outputs.length);
  const verdict = computeVerdict(baseline.evaluation.outputs, dann.evaluation.outputs, scale);
  const seconds = (performance.now() - started) / 1000;
  await writeDemoSummary(outDir, verdict, runs, seconds, data);
  const shown = runs.map((r) => ({ ...r, name: r.name === 'baseline' ? 'source-only' : 'DANN' }));
  await writeComparisonReport(join(outDir, 'report.html'), { title: `ort-dann demo ${runName}`, verdict, runs: shown, seconds });
  process.stdout.write(`\n== verdict on ${dann.evaluation.count} labelled target validation images ==\n${verdictTable(verdict)}\n`
    + `\nmodel ${join(dann.runDir, 'model.onnx')}; report ${join(outDir, 'report.html')}; summary ${join(outDir, 'summary.json')} (${seconds.toFixed(0)} s in all)\n`);
}

export async function demoArtifacts(args: Args): Promise<string> {
  if (args.artifacts) return String(args.artifacts);
  const config = makeConfig({ imageSize: Number(args['image-size']), backbone: DEMO_SETTINGS.backbone });
  const dir = defaultArtifactsDir(config.name, config.imageSize);
  const manifest = join(dir, 'manifest.json');
  // Artifacts from before per-domain BatchNorm statistics were the default are rebuilt: the demo's verdict depends on them.
  const current = existsSync(manifest) && readManifest(dir).config.batchNormStats === config.batchNormStats;
  if (!current) {
    process.stdout.write(`building artifacts for ${config.backbone} at ${config.imageSize} px into ${dir} (once)…\n`);
    await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: join('models', 'weights'), seed: 0 });
  }
  return dir;
}

async function evaluateDemoModel(modelFile: string, data: DemoData, runDir: string, args: Args): Promise<Evaluation> {
  const model = await openInferenceModel(modelFile, { threads: args.threads === undefined ? undefined : Number(args.threads) });
  try {
    const evaluation = await evaluateModel(model, data.targetVal, data.targetValLabels);
    await writeEvaluation(evaluation, model.metadata.outputNames, join(runDir, 'eval'));
    return evaluation;
  } finally {
    await model.release();
  }
}

/** Population std of each column of a [rows, K] matrix (1 for a constant column). */
export function columnStd(values: Float64Array, K: number): number[] {
  const rows = values.length / K;
  return Array.from({ length: K }, (_, k) => {
    let m = 0;
    for (let i = 0; i < rows; i++) m += values[i * K + k];
    m /= rows;
    let v = 0;
    for (let i = 0; i < rows; i++) v += (values[i * K + k] - m) ** 2;
    return Math.sqrt(v / rows) || 1;
  });
}

async function writeDemoSummary(outDir: string, verdict: Verdict, runs: DemoRun[], seconds: number, data: DemoData): Promise<void> {
  // The DANN run's steadiness of the adversarial game, as its own summary.json reports it.
  const dannSummary = JSON.parse(await readFile(join(runs[1].runDir, 'summary.json'), 'utf8').catch(() => '{}')) as { domain_accuracy_last_epochs?: unknown };
  const summary = {
    ...verdictSummary(verdict),
    ...(dannSummary.domain_accuracy_last_epochs ? { domain_accuracy_last_epochs: dannSummary.domain_accuracy_last_epochs } : {}),
    target_images: runs[1].evaluation.count,
    target_labels: data.targetValLabels,
    model: join(runs[1].runDir, 'model.onnx'),
    runs: Object.fromEntries(runs.map((r) => [r.name, r.runDir])),
    seconds,
  };
  await writeFileAtomic(join(outDir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
}
