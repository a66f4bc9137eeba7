/**
 * Scoring an exported model on a labelled image folder: per-output RMSE and MAE for regression
 * (accuracy and mean cross-entropy for classification), with a prediction-vs-truth scatter plot per
 * output. Images and label rows are matched one to one by the data layer's folder validation.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { validateImageFolder } from '../data/folder.ts';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { Accuracy, CrossEntropy, Mae, type Metric, Rmse } from '../metrics.ts';
import { csvLine, formatFloat } from './format.ts';
import { scatterPlot } from './plot.ts';
import { predictFiles, softmaxRows, type InferenceModel } from './runtime.ts';

export interface OutputMetrics {
  name: string;
  rmse: number;
  mae: number;
}

export interface Evaluation {
  model: string;
  images: string;
  labels: string;
  task: 'regression' | 'classification';
  count: number;
  /** Regression: one entry per output. */
  outputs: OutputMetrics[];
  /** Classification only. */
  accuracy?: number;
  crossEntropy?: number;
  files: string[];
  /** [count, K] row-major: regression truth per output, or the class index in column 0. */
  truth: Float64Array;
  /** [count, K] row-major: regression values, or class probabilities. */
  predicted: Float64Array;
  skipped: string[];
}

export interface EvaluateOptions {
  batchSize?: number;
  skipBadImages?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function evaluateModel(model: InferenceModel, imagesDir: string, labelsCsv: string, opts: EvaluateOptions = {}): Promise<Evaluation> {
  const meta = model.metadata;
  const K = meta.outputNames.length;
  // The CSV is checked first: a wrong --labels path should not wait for a scan of every image.
  if (!existsSync(labelsCsv)) throw new UserError(`--labels ${labelsCsv}: labels CSV not found; check the path`);
  const scan = await validateImageFolder(imagesDir, { labelsCsv, skipBadImages: opts.skipBadImages, label: '--images' });
  const columns = scan.outputNames!;
  const C = columns.length;
  // Regression: the CSV needs a column per model output (any order, extra columns ignored).
  // Classification: one column holding the class index 0..K-1.
  let pick: number[];
  if (meta.task === 'regression') {
    pick = meta.outputNames.map((name) => {
      const c = columns.indexOf(name);
      if (c < 0) throw new UserError(`--labels ${labelsCsv}: no column ${name}; the model predicts ${meta.outputNames.join(', ')}, so the header needs filename,${meta.outputNames.join(',')}`);
      return c;
    });
  } else {
    if (C !== 1) throw new UserError(`--labels ${labelsCsv}: a classification model needs one label column with the class index (0..${K - 1}); the header has ${C}`);
    pick = [0];
    scan.images.forEach((img, i) => {
      const v = scan.labels![i];
      if (!(Number.isInteger(v) && v >= 0 && v < K)) throw new UserError(`--labels ${labelsCsv}: ${img.name} has class ${v}, not an index 0..${K - 1} (${meta.outputNames.join(', ')}); fix the row`);
    });
  }
  const truthByPath = new Map(scan.images.map((img, i) => [img.path, pick.map((c) => scan.labels![i * C + c])]));

  const files: string[] = [];
  const truth: number[] = [];
  const predicted: number[] = [];
  const skipped = scan.skipped.map((s) => s.reason);
  const paths = scan.images.map((img) => img.path);
  for await (const batch of predictFiles(model, paths, { batchSize: opts.batchSize ?? 32, skipBadImages: opts.skipBadImages, onSkip: (_f, reason) => skipped.push(reason) })) {
    const values = meta.task === 'classification' ? softmaxRows(batch.outputs.prediction!, K) : batch.outputs.prediction!;
    batch.files.forEach((f, i) => {
      files.push(f);
      truth.push(...truthByPath.get(f)!, ...new Array(K - pick.length).fill(0));
      for (let j = 0; j < K; j++) predicted.push(values[i * K + j]);
    });
    opts.onProgress?.(files.length + skipped.length - scan.skipped.length, paths.length);
  }
  const n = files.length;
  if (n === 0) throw new UserError(`--images ${imagesDir}: no image could be read; fix or replace them`);
  const result: Evaluation = {
    model: model.file, images: imagesDir, labels: labelsCsv, task: meta.task, count: n, outputs: [],
    files, truth: Float64Array.from(truth), predicted: Float64Array.from(predicted), skipped,
  };
  const rows = { rows: n, prediction: predicted, truth };
  const score = (m: Metric) => { m.accumulate(rows); return m.value(); };
  if (meta.task === 'regression') {
    result.outputs = meta.outputNames.map((name, j) => ({ name, rmse: score(new Rmse(`rmse_${name}`, j, { width: K })), mae: score(new Mae(`mae_${name}`, j, { width: K })) }));
  } else {
    // Truth rows are K wide with the class index in column 0; predictions are float64 softmax probabilities.
    result.accuracy = score(new Accuracy('accuracy', { width: K }));
    result.crossEntropy = score(new CrossEntropy('cross_entropy', { width: K }));
  }
  return result;
}

/** A file-name-safe form of an output name, for its plot. */
function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]+/g, '_') || 'output';
}

/**
 * Writes metrics.json, predictions.csv and (regression) scatter_<output>.png into `outDir`, each
 * atomically; returns the paths written.
 */
export async function writeEvaluation(e: Evaluation, outputNames: string[], outDir: string): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const K = outputNames.length;
  const written: string[] = [];
  const put = async (name: string, data: string | Buffer) => {
    await writeFileAtomic(join(outDir, name), data);
    written.push(join(outDir, name));
  };
  const metrics = {
    model: e.model, images: e.images, labels: e.labels, task: e.task, count: e.count,
    ...(e.task === 'regression'
      ? { outputs: Object.fromEntries(e.outputs.map((o) => [o.name, { rmse: o.rmse, mae: o.mae }])) }
      : { accuracy: e.accuracy, cross_entropy: e.crossEntropy, classes: outputNames }),
    skipped: e.skipped,
  };
  await put('metrics.json', `${JSON.stringify(metrics, null, 2)}\n`);
  const header = e.task === 'regression'
    ? ['file', ...outputNames.flatMap((n) => [`${n}_true`, `${n}_pred`])]
    : ['file', 'class_true', 'class_pred', ...outputNames.map((n) => `p_${n}`)];
  const lines = [csvLine(header)];
  e.files.forEach((f, i) => {
    const row = e.predicted.subarray(i * K, (i + 1) * K);
    if (e.task === 'regression') {
      lines.push(csvLine([f, ...outputNames.flatMap((_, j) => [formatFloat(e.truth[i * K + j]), formatFloat(row[j])])]));
    } else {
      const best = row.indexOf(Math.max(...row));
      lines.push(csvLine([f, outputNames[e.truth[i * K]], outputNames[best], ...Array.from(row, formatFloat)]));
    }
  });
  await put('predictions.csv', lines.join(''));
  if (e.task === 'regression') {
    for (const [j, o] of e.outputs.entries()) {
      const pick = (a: Float64Array) => Float64Array.from({ length: e.count }, (_, i) => a[i * K + j]);
      const png = scatterPlot(pick(e.truth), pick(e.predicted), { title: o.name, subtitle: `rmse ${o.rmse.toPrecision(4)}  mae ${o.mae.toPrecision(4)}  n ${e.count}` });
      await put(`scatter_${slug(o.name)}.png`, png);
    }
  }
  return written;
}
