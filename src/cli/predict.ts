import { once } from 'node:events';
import { extname } from 'node:path';
import cliProgress from 'cli-progress';
import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { checkRanges } from './ranges.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { guardOutput } from './output-guard.ts';
import { csvLine, formatFloat } from '../export/format.ts';
import { EXECUTION_PROVIDERS, listImageFiles, openInferenceModel, quietRuntimeLog, predictFiles, softmaxRows, type ExecutionProvider, type PredictedBatch } from '../export/runtime.ts';
import { type InferenceMetadata } from '../export/metadata.ts';

interface Args { model: string; images: string[]; out?: string; ep: string; 'batch-size': number; threads?: number; 'skip-bad-images': boolean; force: boolean }

/** One image's result: the file and named columns (numbers, or the class name). */
type Row = [file: string, values: [string, number | string][]];

function rowsOf(batch: PredictedBatch, meta: InferenceMetadata): Row[] {
  const k = meta.outputNames.length;
  const pred = batch.outputs.prediction!;
  const probs = meta.task === 'classification' ? softmaxRows(pred, k) : undefined;
  return batch.files.map((file, i) => {
    const values: [string, number | string][] = [];
    if (probs) {
      let best = 0;
      for (let j = 1; j < k; j++) if (probs[i * k + j] > probs[i * k + best]) best = j;
      values.push(['class', meta.outputNames[best]]);
    }
    meta.outputNames.forEach((name, j) => values.push([name, (probs ?? pred)[i * k + j]]));
    if (batch.outputs.domain_logit) values.push(['domain_logit', batch.outputs.domain_logit[i]]);
    return [file, values];
  });
}

function columns(meta: InferenceMetadata): string[] {
  return [...(meta.task === 'classification' ? ['class'] : []), ...meta.outputNames, ...(meta.outputs.includes('domain_logit') ? ['domain_logit'] : [])];
}

const lastValue = <T>(v: T | T[]): T => (Array.isArray(v) ? v[v.length - 1] : v);

const cell = (v: number | string) => (typeof v === 'number' ? formatFloat(v) : v);

async function* csvText(batches: AsyncIterable<PredictedBatch>, meta: InferenceMetadata): AsyncGenerator<Uint8Array> {
  yield Buffer.from(csvLine(['file', ...columns(meta)]));
  for await (const batch of batches) {
    yield Buffer.from(rowsOf(batch, meta).map(([file, values]) => csvLine([file, ...values.map(([, v]) => cell(v))])).join(''));
  }
}

async function* jsonText(batches: AsyncIterable<PredictedBatch>, meta: InferenceMetadata): AsyncGenerator<Uint8Array> {
  let first = true;
  yield Buffer.from('[');
  for await (const batch of batches) {
    const items = rowsOf(batch, meta).map(([file, values]) => {
      const obj: Record<string, unknown> = { file };
      if (meta.task === 'classification') {
        obj.class = values[0][1];
        obj.probabilities = Object.fromEntries(values.slice(1, 1 + meta.outputNames.length).map(([n, v]) => [n, Number(cell(v))]));
        for (const [n, v] of values.slice(1 + meta.outputNames.length)) obj[n] = Number(cell(v));
      } else {
        for (const [n, v] of values) obj[n] = Number(cell(v));
      }
      return JSON.stringify(obj);
    });
    yield Buffer.from(items.map((s) => {
      const sep = first ? '' : ',';
      first = false;
      return `${sep}\n  ${s}`;
    }).join(''));
  }
  yield Buffer.from(first ? ']\n' : '\n]\n');
}

export const predictCommand: CommandModule<object, Args> = {
  command: 'predict <images..>',
  describe: 'Predict with an exported model on image files or folders; CSV (or JSON) with one row per image',
  builder: (y) => y
    // yargs fills a variadic positional through duplicate-argument arrays, which the CLI turns off
    // globally (the last of a repeated flag wins); turn them back on here and keep last-wins per flag.
    .parserConfiguration({ 'duplicate-arguments-array': true })
    .positional('images', { type: 'string', array: true, demandOption: true, default: undefined, describe: 'Image files and folders (a folder: its image files, not recursive)' })
    .option('model', { type: 'string', demandOption: true, coerce: lastValue<string>, describe: 'Exported model (ort-dann export)' })
    .option('out', { type: 'string', coerce: lastValue<string>, describe: 'Write predictions to this .csv or .json file (default: CSV on stdout)' })
    .option('ep', { type: 'string', choices: [...EXECUTION_PROVIDERS], default: 'cpu', coerce: lastValue<string>, describe: 'ONNX Runtime execution provider' })
    .option('batch-size', { type: 'number', default: 32, coerce: lastValue<number>, describe: 'Images per inference batch' })
    .option('threads', { type: 'number', coerce: lastValue<number>, describe: 'Intra-op threads (default: one per core)' })
    .option('skip-bad-images', { type: 'boolean', default: false, coerce: lastValue<boolean>, describe: 'Leave unreadable images out with a warning instead of stopping' })
    .option('force', { type: 'boolean', default: false, coerce: lastValue<boolean>, describe: 'Replace predictions already at --out (never anything else)' }),
  handler: async (args) => {
    checkRanges(args, ['batch-size', 'threads']);
    const format = args.out === undefined ? 'csv' : extname(args.out).toLowerCase().slice(1);
    if (format !== 'csv' && format !== 'json') throw new UserError(`--out ${args.out}: name a .csv or .json file`);
    if (args.out !== undefined) guardOutput(args.out, { flag: '--out', own: ['predictions'], folder: false, force: args.force, example: 'predictions.csv' });
    if (!(Number.isInteger(args['batch-size']) && args['batch-size'] > 0)) throw new UserError(`--batch-size ${args['batch-size']}: must be a positive integer such as 32`);
    const started = performance.now();
    quietRuntimeLog();
    const model = await openInferenceModel(args.model, { ep: args.ep as ExecutionProvider, threads: args.threads });
    try {
      const files = await listImageFiles(args.images);
      // The bar goes to stderr, and only while stdout is not the terminal showing the rows.
      const bar = process.stderr.isTTY && (args.out || !process.stdout.isTTY)
        ? new cliProgress.SingleBar({ stream: process.stderr, format: 'predict |{bar}| {value}/{total} images [{duration_formatted}<{eta_formatted}]', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
        : undefined;
      const skipped: string[] = [];
      let done = 0;
      const batches = (async function* () {
        bar?.start(files.length, 0);
        try {
          for await (const b of predictFiles(model, files, {
            batchSize: args['batch-size'], skipBadImages: args['skip-bad-images'],
            onSkip: (_file, reason) => { skipped.push(reason); bar?.increment(); },
          })) {
            done += b.files.length;
            bar?.increment(b.files.length);
            yield b;
          }
        } finally {
          bar?.stop();
        }
      })();
      const text = format === 'json' ? jsonText(batches, model.metadata) : csvText(batches, model.metadata);
      if (args.out) {
        await writeFileAtomic(args.out, text);
      } else {
        for await (const chunk of text) if (!process.stdout.write(chunk)) await once(process.stdout, 'drain');
      }
      const seconds = (performance.now() - started) / 1000;
      if (skipped.length > 0) process.stderr.write(`ort-dann: warning: skipped ${skipped.length} unreadable image${skipped.length > 1 ? 's' : ''} (first: ${skipped[0]})\n`);
      const skipNote = skipped.length > 0 ? `, skipped ${skipped.length}` : '';
      process.stderr.write(`predicted ${done} image${done === 1 ? '' : 's'}${skipNote} in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(1)} images/s)${args.out ? `; wrote ${args.out}` : ''}\n`);
    } finally {
      await model.release();
    }
  },
};
