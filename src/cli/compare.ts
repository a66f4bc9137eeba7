/**
 * `ort-dann compare`: the proof that adaptation helps, or the evidence that it did not. Trains the
 * source-only baseline (--no-domain) and DANN with the same seed, data and budget, evaluates both
 * exported models on the labelled target validation images, and writes a report.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandModule, Options } from 'yargs';
import { ensureDemoData } from '../data/index.ts';
import { UserError } from '../errors.ts';
import { evaluateModel, type Evaluation, writeEvaluation } from '../export/evaluate.ts';
import { openInferenceModel } from '../export/runtime.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { improves, Rmse } from '../metrics.ts';
import { readManifest } from '../onnx/manifest.ts';
import { demoDataDir, without } from './flags.ts';
import { runTrain, trainFlags } from './train.ts';

type Args = Record<string, unknown>;

interface Row { output: string; sourceOnly: number; dann: number; better: boolean }

export function compareReport(sourceOnly: Evaluation, dann: Evaluation): { rows: Row[]; markdown: string } {
  const rows: Row[] = sourceOnly.outputs.map((o, k) => ({ output: o.name, sourceOnly: o.rmse, dann: dann.outputs[k].rmse, better: improves(Rmse.direction, dann.outputs[k].rmse, o.rmse) }));
  const wins = rows.filter((r) => r.better).length;
  const lines = [
    '# Source-only vs DANN on the labelled target images',
    '',
    `Target images: ${dann.images} (${dann.count} labelled, labels from ${dann.labels}); same seed, data and training budget for both runs.`,
    '',
    '| output | source-only RMSE | DANN RMSE | change | source-only MAE | DANN MAE |',
    '|---|---|---|---|---|---|',
    ...rows.map((r, k) => `| ${r.output} | ${r.sourceOnly.toPrecision(4)} | ${r.dann.toPrecision(4)} | ${(((r.dann - r.sourceOnly) / r.sourceOnly) * 100).toFixed(1)}% | ${sourceOnly.outputs[k].mae.toPrecision(4)} | ${dann.outputs[k].mae.toPrecision(4)} |`),
    '',
    wins === rows.length ? `**DANN beats source-only on every output (${wins}/${rows.length}).**`
      : wins === 0 ? `**DANN does not beat source-only on any output (0/${rows.length}).** Adaptation did not help with this budget and these settings.`
        : `**DANN beats source-only on ${wins} of ${rows.length} outputs.**`,
    '',
    'Scatter plots (prediction vs truth): `source-only/eval/` and `dann/eval/`.',
    '',
  ];
  return { rows, markdown: lines.join('\n') };
}

export const compareCommand: CommandModule<object, Args> = {
  command: 'compare',
  describe: 'Train source-only and DANN with the same seed and budget, evaluate both on labelled target images, write a report',
  // Both runs start from scratch in --out-dir, one of them source-only: --resume, --run-dir and --no-domain mean nothing here.
  builder: (y) => y.options(without(trainFlags, 'resume', 'run-dir', 'domain') as Record<string, Options>).option('out-dir', { type: 'string', describe: 'Where both runs and the report go (default runs/compare-<time>)' }),
  handler: async (args) => {
    const outDir = resolve(String(args['out-dir'] ?? join('runs', `compare-${new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '')}`)));
    let targetVal = args['target-val'] as string | undefined;
    let labels = args['target-labels'] as string | undefined;
    if (args.target === undefined) {
      const size = Number(args['image-size'] ?? (args.artifacts ? readManifest(String(args.artifacts)).config.imageSize : 128));
      const demo = await ensureDemoData({ out: demoDataDir(size), size, seed: 0 });
      [targetVal, labels] = [demo.targetVal, demo.targetValLabels];
    }
    if (!labels) throw new UserError('--target-labels: compare needs labels for the --target-val images to measure target error');
    const evaluations: Evaluation[] = [];
    for (const [name, domain] of [['source-only', false], ['dann', true]] as const) {
      const runDir = join(outDir, name);
      process.stdout.write(`\n== ${name} ==\n`);
      await runTrain({ ...args, domain, 'run-dir': runDir, 'run-name': `${args['run-name'] ?? 'compare'}-${name}` });
      const modelFile = join(runDir, 'model.onnx');
      if (!existsSync(modelFile)) throw new UserError(`${name}: the run stopped before exporting ${modelFile}; rerun compare`);
      const model = await openInferenceModel(modelFile, { threads: args.threads === undefined ? undefined : Number(args.threads) });
      try {
        const evaluation = await evaluateModel(model, targetVal!, labels);
        await writeEvaluation(evaluation, model.metadata.outputNames, join(runDir, 'eval'));
        evaluations.push(evaluation);
      } finally {
        await model.release();
      }
    }
    const { rows, markdown } = compareReport(evaluations[0], evaluations[1]);
    await writeFileAtomic(join(outDir, 'report.md'), markdown);
    await writeFileAtomic(join(outDir, 'report.json'), `${JSON.stringify({ rows, sourceOnly: evaluations[0].outputs, dann: evaluations[1].outputs }, null, 2)}\n`);
    process.stdout.write(`\n${markdown}\nreport: ${join(outDir, 'report.md')}\n`);
  },
};
