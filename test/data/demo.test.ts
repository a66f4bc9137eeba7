import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { ensureDemoData, generateDemoData } from '../../src/data/demo.ts';
import { openSource, openTarget } from '../../src/data/index.ts';
import { tempDirs } from './helpers.ts';

const newDir = tempDirs('ort-dann-demo-');
const bin = fileURLToPath(new URL('../../bin/ort-dann.js', import.meta.url));

test('demo-data writes target train/val folders, separate label CSVs and a labelled source-val folder', async () => {
  const out = join(newDir(), 'demo');
  const d = await generateDemoData({ out, size: 32, train: 6, val: 4, sourceVal: 3, seed: 1 });
  assert.deepEqual(readdirSync(out).sort(), ['demo.json', 'source-val', 'target-train', 'target-train-labels.csv', 'target-val', 'target-val-labels.csv']);
  assert.deepEqual(readdirSync(join(d.targetTrain, 'images')), ['000000.png', '000001.png', '000002.png', '000003.png', '000004.png', '000005.png']);
  assert.deepEqual(readdirSync(d.targetTrain), ['images']); // no labels next to the unlabelled images
  const csv = readFileSync(d.targetTrainLabels, 'utf8').trim().split('\n');
  assert.equal(csv[0], 'filename,num_particles,planar_dist,depth_dist');
  assert.equal(csv.length, 7);
  const target = await sharp(join(d.targetTrain, 'images/000000.png')).metadata();
  assert.deepEqual([target.width, target.height, target.channels, target.depth], [32, 32, 1, 'uchar']);
  const source = await sharp(join(d.sourceVal!, 'images/000000.png')).metadata();
  assert.deepEqual([source.channels, source.depth], [1, 'ushort']);
  // The folders open as the train command will open them.
  const t = await openTarget(d.targetTrain, { size: 32, labelsCsv: d.targetTrainLabels });
  assert.equal(t.length, 6);
  const s = await openSource(d.sourceVal!, { size: 32, seed: 0, split: 'val' });
  assert.deepEqual(s.outputNames, ['num_particles', 'planar_dist', 'depth_dist']);
  assert.equal((await s.nextBatch(3)).count, 3);
  await Promise.all([t.close(), s.close()]);
});

test('the demo target domain differs from the source domain (brighter, noisier background)', async () => {
  const d = await generateDemoData({ out: join(newDir(), 'demo'), size: 32, train: 8, val: 1, sourceVal: 8 });
  const stats = async (dir: string) => {
    const src = await openTarget(dir, { size: 32, split: 'val' });
    const b = await src.nextBatch(8);
    await src.close();
    const sorted = [...b.images].sort((x, y) => x - y);
    return { median: sorted[sorted.length >> 1], q10: sorted[Math.floor(sorted.length * 0.1)] };
  };
  const target = await stats(d.targetTrain);
  const source = await stats(d.sourceVal!);
  assert.ok(target.median > source.median + 0.05, `median ${target.median} vs ${source.median}`);
  assert.ok(target.median - target.q10 > 2 * (source.median - source.q10), 'target background noise should be much larger');
});

test('ensureDemoData reuses matching data; a foreign folder is never replaced', async () => {
  const out = join(newDir(), 'demo');
  const first = await ensureDemoData({ out, size: 16, train: 2, val: 1, sourceVal: 0 });
  assert.ok(first.seconds > 0);
  assert.equal(first.sourceVal, undefined);
  assert.ok(!existsSync(join(out, 'source-val')));
  const again = await ensureDemoData({ out, size: 16, train: 2, val: 1, sourceVal: 0 });
  assert.equal(again.seconds, 0);
  const changed = await ensureDemoData({ out, size: 16, train: 3, val: 1, sourceVal: 0 });
  assert.ok(changed.seconds > 0);
  assert.equal(readdirSync(join(out, 'target-train/images')).length, 3);
  const foreign = join(newDir(), 'mine');
  mkdirSync(foreign);
  writeFileSync(join(foreign, 'thesis.tex'), 'precious');
  await assert.rejects(generateDemoData({ out: foreign, train: 1, val: 1 }), /demo-data: .*mine exists and is not a demo-data folder \(it holds thesis\.tex\); choose another --out or empty it/);
  assert.equal(readFileSync(join(foreign, 'thesis.tex'), 'utf8'), 'precious');
  await assert.rejects(generateDemoData({ out: foreign, size: 4 }), /--size must be an integer >= 8, got 4/);
});

test('ort-dann demo-data from the CLI (simulator workers under bin/ort-dann.js)', () => {
  const out = join(newDir(), 'cli-demo');
  const stdout = execFileSync(process.execPath, [bin, 'demo-data', '--out', out, '--size', '16', '--train', '3', '--val', '2', '--source-val', '2', '--seed', '4'], {
    encoding: 'utf8',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  assert.match(stdout, /^wrote .*cli-demo in [\d.]+ s:/);
  assert.equal(readdirSync(join(out, 'target-val/images')).length, 2);
  assert.equal(readFileSync(join(out, 'source-val/labels.csv'), 'utf8').trim().split('\n').length, 3);
});
