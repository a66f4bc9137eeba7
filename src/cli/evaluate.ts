import cliProgress from 'cli-progress';
import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { checkRanges } from './ranges.ts';
import { evaluateModel, writeEvaluation } from '../export/evaluate.ts';
import { formatTable } from '../export/format.ts';
import { guardOutput } from './output-guard.ts';
import { EXECUTION_PROVIDERS, openInferenceModel, quietRuntimeLog, type ExecutionProvider } from '../export/runtime.ts';

interface Args { model: string; images: string; labels: string; 'out-dir': string; ep: string; 'batch-size': number; threads?: number; 'skip-bad-images': boolean; force: boolean }

export const evaluateCommand: CommandModule<object, Args> = {
  command: 'evaluate',
  describe: 'Score an exported model on labelled images: RMSE and MAE per output, scatter plots of prediction vs truth',
  builder: (y) => y
    .option('model', { type: 'string', demandOption: true, describe: 'Exported model (ort-dann export)' })
    .option('images', { type: 'string', demandOption: true, describe: 'Folder of images (or a folder with images/)' })
    .option('labels', { type: 'string', demandOption: true, describe: 'CSV filename,<output names…> with one row per image' })
    .option('out-dir', { type: 'string', default: 'evaluation', describe: 'Folder for metrics.json, predictions.csv and scatter_<output>.png' })
    .option('ep', { type: 'string', choices: [...EXECUTION_PROVIDERS], default: 'cpu', describe: 'ONNX Runtime execution provider' })
    .option('batch-size', { type: 'number', default: 32, describe: 'Images per inference batch' })
    .option('threads', { type: 'number', describe: 'Intra-op threads (default: one per core)' })
    .option('skip-bad-images', { type: 'boolean', default: false, describe: 'Leave unreadable images out with a warning instead of stopping' })
    .option('force', { type: 'boolean', default: false, describe: 'Replace an earlier evaluation in --out-dir (never anything else)' }),
  handler: async (args) => {
    checkRanges(args, ['batch-size', 'threads']);
    if (!(Number.isInteger(args['batch-size']) && args['batch-size'] > 0)) throw new UserError(`--batch-size ${args['batch-size']}: must be a positive integer such as 32`);
    guardOutput(args['out-dir'], { flag: '--out-dir', own: ['evaluation folder'], folder: true, force: args.force });
    quietRuntimeLog();
    const model = await openInferenceModel(args.model, { ep: args.ep as ExecutionProvider, threads: args.threads });
    const bar = process.stderr.isTTY
      ? new cliProgress.SingleBar({ stream: process.stderr, format: 'evaluate |{bar}| {value}/{total} images [{duration_formatted}<{eta_formatted}]', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
      : undefined;
    let barStarted = false;
    try {
      const e = await evaluateModel(model, args.images, args.labels, {
        batchSize: args['batch-size'], skipBadImages: args['skip-bad-images'],
        onProgress: (done, total) => {
          if (bar && !barStarted) bar.start(total, 0);
          barStarted = true;
          bar?.update(done);
        },
      }).finally(() => bar?.stop());
      const written = await writeEvaluation(e, model.metadata.outputNames, args['out-dir']);
      if (e.skipped.length > 0) process.stderr.write(`ort-dann: warning: skipped ${e.skipped.length} unreadable image${e.skipped.length > 1 ? 's' : ''} (first: ${e.skipped[0]})\n`);
      const table = e.task === 'regression'
        ? [['output', 'RMSE', 'MAE'], ...e.outputs.map((o) => [o.name, o.rmse.toPrecision(4), o.mae.toPrecision(4)])]
        : [['metric', 'value'], ['accuracy', e.accuracy!.toFixed(4)], ['cross-entropy', e.crossEntropy!.toPrecision(4)]];
      process.stdout.write(`${formatTable(table)}\n${e.count} images from ${args.images}; wrote ${written.join(', ')}\n`);
    } finally {
      await model.release();
    }
  },
};
