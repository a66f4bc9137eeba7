/**
 * `ort-dann predict` and `ort-dann evaluate` on small generated images, run as a user runs them
 * (node bin/ort-dann.js): predictions equal the model run on the data layer's preprocessing, metrics
 * and plots are written, and bad inputs end with a one-line error and a non-zero exit.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import pngjs from 'pngjs';
import sharp from 'sharp';
import { loadImageTensor } from '../../src/data/decode.ts';
import { IMAGENET_NORMALIZATION } from '../../src/data/normalization.ts';
import { evaluateModel } from '../../src/export/evaluate.ts';
import { openInferenceModel } from '../../src/export/runtime.ts';
import { writePng } from '../data/helpers.ts';
import { tempDirs } from '../io/tmp.ts';
import { exportFixture, makeFixture, relErr, runCli, runOrt, type Fixture } from './fixture.ts';

const temp = tempDirs('ort-dann-predict-');
const OUTPUTS = ['num_particles', 'planar_dist', 'depth_dist'];
let dir: string;
let fx: Fixture;
let model: string;
let imageDir: string;
let files: string[];
let session: ort.InferenceSession;

before(async () => {
  dir = temp();
  fx = await makeFixture(join(dir, 'artifacts'));
  model = join(dir, 'model.onnx');
  await exportFixture(fx, model, { normalization: IMAGENET_NORMALIZATION, withDomain: true });
  imageDir = join(dir, 'images');
  // Model-sized PNGs, larger and non-square ones (resized), a JPEG and a gray image.
  files = [
    await writePng(imageDir, 'a.png', 128, 128, 1),
    await writePng(imageDir, 'b.png', 200, 150, 2),
    await writePng(imageDir, 'c.png', 64, 64, 3),
    await writePng(imageDir, 'd,quoted "name".png', 128, 128, 4),
  ];
  const jpeg = join(imageDir, 'e.jpg');
  await sharp(readFileSync(files[1])).jpeg({ quality: 90 }).toFile(jpeg);
  const gray = join(imageDir, 'f.png');
  await sharp(Buffer.from(Array.from({ length: 90 * 90 }, (_, i) => (i * 7) % 256)), { raw: { width: 90, height: 90, channels: 1 } }).png().toFile(gray);
  files.push(jpeg, gray);
  files.sort();
  writeFileSync(join(imageDir, 'notes.txt'), 'not an image: predict skips non-image names in folders');
  session = await ort.InferenceSession.create(model, { intraOpNumThreads: 2 });
});

after(() => session?.release());

/** The model on each file alone, preprocessed by the data layer: what predict must reproduce. */
async function expected(file: string, names = ['prediction', 'domain_logit']): Promise<number[]> {
  const x = await loadImageTensor(file, 128, IMAGENET_NORMALIZATION);
  const out = await session.run({ images: new ort.Tensor('float32', x, [1, 3, 128, 128]) });
  return names.flatMap((n) => Array.from(out[n].data as Float32Array));
}

/** Minimal RFC 4180 reader for the tests' own CSVs (quoted fields, no embedded newlines). */
function parseCsv(text: string): string[][] {
  return text.trim().split('\n').map((line) => {
    const fields: string[] = [];
    for (let i = 0; i <= line.length; ) {
      if (line[i] === '"') {
        let s = '';
        for (i++; !(line[i] === '"' && line[i + 1] !== '"'); i++) s += line[i] === '"' ? line[++i] : line[i];
        fields.push(s);
        i += 2;
      } else {
        const end = line.indexOf(',', i) === -1 ? line.length : line.indexOf(',', i);
        fields.push(line.slice(i, end));
        i = end + 1;
      }
    }
    return fields;
  });
}

test('predict: CSV and JSON rows equal the model on the data layer\'s preprocessing', async () => {
  const csvOut = join(dir, 'preds.csv');
  const jsonOut = join(dir, 'preds.json');
  const [csv, json, stdout] = await Promise.all([
    runCli(['predict', '--model', model, imageDir, '--out', csvOut, '--batch-size', '4']),
    runCli(['predict', '--model', model, files[0], files[3], '--out', jsonOut]),
    runCli(['predict', '--model', model, files[2]]),
  ]);
  for (const r of [csv, json, stdout]) assert.equal(r.status, 0, r.stderr);
  const rows = parseCsv(readFileSync(csvOut, 'utf8'));
  assert.deepEqual(rows[0], ['file', ...OUTPUTS, 'domain_logit']);
  assert.deepEqual(rows.slice(1).map((r) => r[0]), files, 'every image once, in name order, notes.txt left out');
  for (const row of rows.slice(1)) {
    const err = relErr(row.slice(1).map(Number), await expected(row[0]));
    assert.ok(err < 1e-5, `${row[0]}: relative error ${err}`);
  }
  assert.match(csv.stderr, /predicted 6 images/);

  const items = JSON.parse(readFileSync(jsonOut, 'utf8')) as Record<string, number | string>[];
  assert.deepEqual(items.map((i) => i.file), [files[0], files[3]]);
  const byFile = new Map(rows.slice(1).map((r) => [r[0], r.slice(1).map(Number)]));
  for (const item of items) assert.deepEqual([...OUTPUTS, 'domain_logit'].map((k) => item[k]), byFile.get(item.file as string));

  assert.deepEqual(parseCsv(stdout.stdout), [rows[0], rows.find((r) => r[0] === files[2])!]);
});

test('predict: classification gives the class and its probabilities; --skip-bad-images', async () => {
  const cls = await makeFixture(join(dir, 'cls-artifacts'), { task: 'classification' });
  const clsModel = join(dir, 'cls.onnx');
  await exportFixture(cls, clsModel);
  const mixed = join(dir, 'mixed');
  mkdirSync(mixed);
  const good = [await writePng(mixed, 'good1.png', 100, 100, 5), await writePng(mixed, 'good2.png', 128, 128, 6)];
  writeFileSync(join(mixed, 'broken.png'), readFileSync(good[0]).subarray(0, 60));
  const out = join(dir, 'cls.csv');
  const r = await runCli(['predict', '--model', clsModel, mixed, '--out', out, '--skip-bad-images']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: skipped 1 unreadable image \(first: .*broken\.png/);
  const rows = parseCsv(readFileSync(out, 'utf8'));
  assert.deepEqual(rows[0], ['file', 'class', 'cat', 'dog', 'owl', 'yak']);
  assert.deepEqual(rows.slice(1).map((row) => row[0]), good);
  for (const row of rows.slice(1)) {
    const p = row.slice(2).map(Number);
    assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    assert.equal(row[1], ['cat', 'dog', 'owl', 'yak'][p.indexOf(Math.max(...p))]);
    const x = await loadImageTensor(row[0], 128, { kind: 'none' });
    const logits = Array.from((await runOrt(clsModel, { images: new ort.Tensor('float32', x, [1, 3, 128, 128]) })).prediction);
    const e = logits.map((v) => Math.exp(v - Math.max(...logits)));
    assert.ok(relErr(p, e.map((v) => v / e.reduce((a, b) => a + b, 0))) < 1e-5);
  }

  // Classification evaluate: accuracy and cross-entropy against class indices.
  const evalDir = join(dir, 'cls-eval');
  await writePng(evalDir, 'x.png', 100, 100, 5);
  await writePng(evalDir, 'y.png', 128, 128, 6);
  const labels = join(dir, 'cls-labels.csv');
  const truth = [0, 3];
  writeFileSync(labels, `filename,class\nx.png,${truth[0]}\ny.png,${truth[1]}\n`);
  const m = await openInferenceModel(clsModel, { threads: 2 });
  try {
    const ev = await evaluateModel(m, evalDir, labels);
    const probs = [0, 1].map((i) => Array.from(ev.predicted.subarray(i * 4, i * 4 + 4)));
    const hits = probs.filter((p, i) => p.indexOf(Math.max(...p)) === truth[i]).length;
    assert.equal(ev.accuracy, hits / 2);
    assert.ok(Math.abs(ev.crossEntropy! - (-Math.log(probs[0][truth[0]]) - Math.log(probs[1][truth[1]])) / 2) < 1e-12);
    writeFileSync(labels, 'filename,class\nx.png,0\ny.png,4\n');
    await assert.rejects(evaluateModel(m, evalDir, labels), /y\.png has class 4, not an index 0\.\.3 \(cat, dog, owl, yak\)/);
  } finally {
    await m.release();
  }
});

test('evaluate: RMSE and MAE per output, predictions.csv, one scatter PNG per output', async () => {
  const evalDir = join(dir, 'eval');
  const names = ['p1.png', 'p2.png', 'p3.png', 'p4.png', 'p5.png'];
  for (const [k, n] of names.entries()) await writePng(join(evalDir, 'images'), n, 96 + 8 * k, 128, 10 + k);
  const truth = names.map((_, k) => [k * 2.5, 0.1 * k - 0.2, 1 + k * k * 0.01]);
  // Extra and reordered columns are fine: outputs are matched by name.
  writeFileSync(join(evalDir, 'labels.csv'), `filename,depth_dist,extra,num_particles,planar_dist\n${names.map((n, k) => `${n},${truth[k][2]},9,${truth[k][0]},${truth[k][1]}`).join('\n')}\n`);
  const outDir = join(dir, 'eval-out');
  const r = await runCli(['evaluate', '--model', model, '--images', evalDir, '--labels', join(evalDir, 'labels.csv'), '--out-dir', outDir]);
  assert.equal(r.status, 0, r.stderr);
  const metrics = JSON.parse(readFileSync(join(outDir, 'metrics.json'), 'utf8'));
  assert.equal(metrics.count, 5);
  const rows = parseCsv(readFileSync(join(outDir, 'predictions.csv'), 'utf8'));
  assert.deepEqual(rows[0], ['file', ...OUTPUTS.flatMap((o) => [`${o}_true`, `${o}_pred`])]);
  const predictions = await Promise.all(names.map((n) => expected(join(evalDir, 'images', n), ['prediction'])));
  for (const [j, name] of OUTPUTS.entries()) {
    const pred = predictions.map((p) => p[j]);
    const err = pred.map((p, k) => p - truth[k][j]);
    const rmse = Math.sqrt(err.reduce((a, e) => a + e * e, 0) / 5);
    const mae = err.reduce((a, e) => a + Math.abs(e), 0) / 5;
    assert.ok(Math.abs(metrics.outputs[name].rmse - rmse) <= 1e-5 * rmse, `${name} rmse ${metrics.outputs[name].rmse} vs ${rmse}`);
    assert.ok(Math.abs(metrics.outputs[name].mae - mae) <= 1e-5 * mae, `${name} mae`);
    // Labels are read as float32, as training reads them.
    assert.deepEqual(rows.slice(1).map((row) => Number(row[1 + 2 * j])), truth.map((t) => Number(Math.fround(t[j]).toPrecision(9))));
    assert.match(r.stdout, new RegExp(`^${name}\\s+${metrics.outputs[name].rmse.toPrecision(4)}\\s+${metrics.outputs[name].mae.toPrecision(4)}$`, 'm'));
    const png = pngjs.PNG.sync.read(readFileSync(join(outDir, `scatter_${name}.png`)));
    assert.equal(png.width, 560);
    // Points (blue-ish) and the y = x line (red) are drawn.
    let blue = 0;
    let red = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      const [R, G, B] = [png.data[i], png.data[i + 1], png.data[i + 2]];
      if (B > R + 40 && B > 150) blue++;
      if (R > 180 && G < 80 && B < 80) red++;
    }
    assert.ok(blue > 20 && red > 200, `${name}: ${blue} point pixels, ${red} line pixels`);
  }
});

test('bad model, image or labels: one-line error naming the file, non-zero exit', async () => {
  const bad = join(dir, 'bad');
  mkdirSync(bad);
  const truncated = join(bad, 'truncated.onnx');
  writeFileSync(truncated, readFileSync(model).subarray(0, 1_000_000));
  const text = join(bad, 'text.onnx');
  writeFileSync(text, 'this is not a model\n');
  const corrupt = join(bad, 'corrupt.png');
  writeFileSync(corrupt, readFileSync(files[0]).subarray(0, 100));
  const plain = join(fx.artifacts, 'eval_model.onnx');
  const labelsOk = join(bad, 'labels-ok.csv');
  writeFileSync(labelsOk, 'filename,num_particles,planar_dist,depth_dist\na.png,1,2,3\n');
  const img = files[0];
  const cases: [string[], RegExp][] = [
    [['predict', '--model', join(bad, 'missing.onnx'), img], /missing\.onnx does not exist/],
    [['predict', '--model', truncated, img], /truncated\.onnx (is not a valid ONNX model|holds no ONNX graph)/],
    [['predict', '--model', text, img], /text\.onnx (is not a valid ONNX model|holds no ONNX graph)/],
    [['predict', '--model', plain, img], /eval_model\.onnx: an ONNX model without ort-dann metadata .*ort-dann export/],
    [['predict', '--model', model, corrupt], /corrupt\.png: .*(truncated|corrupt).*--skip-bad-images/],
    [['predict', '--model', model, img, '--out', join(bad, 'p.txt')], /--out .*p\.txt: name a \.csv or \.json file/],
    [['predict', '--model', model, img, '--ep', 'cuda'], /--ep cuda: onnxruntime-node cannot use CUDA here/],
    [['evaluate', '--model', model, '--images', imageDir, '--labels', join(bad, 'labels.csv')], /labels\.csv: labels CSV not found/],
    [['evaluate', '--model', model, '--images', join(bad, 'no-dir'), '--labels', labelsOk], /no-dir: folder not found/],
  ];
  const results = await Promise.all(cases.map(([args]) => runCli(args)));
  results.forEach((r, k) => {
    const what = cases[k][0].join(' ');
    assert.notEqual(r.status, 0, what);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: ${r.stderr}`);
    assert.match(r.stderr, /^ort-dann: /, what);
    assert.doesNotMatch(r.stderr, /internal error/, what);
    assert.match(r.stderr, cases[k][1], what);
  });
});
