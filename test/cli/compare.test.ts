import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { generateDemoData } from '../../src/data/index.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-compare-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('compare --seeds trains source-only and DANN per seed and reports signed changes with mean and spread', async () => {
  const artifacts = join(root, 'artifacts');
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 2 });
  const data = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 8, val: 6, sourceVal: 4, seed: 4 });
  const out = join(root, 'cmp');
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'compare', '--artifacts', artifacts, '--target', data.targetTrain, '--target-val', data.targetVal,
    '--target-labels', data.targetValLabels, '--batch-size', '2', '--source-size', '4', '--val-size', '2', '--epochs', '1', '--freeze-epochs', '0',
    '--threads', '2', '--wandb', 'disabled', '--out-dir', out, '--seeds', '3,4'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  const n = '[0-9.e+-]+ ± [0-9.e+-]+';
  for (const name of ['num_particles', 'planar_dist', 'depth_dist']) assert.match(report, new RegExp(`\\| ${name} \\| ${n} \\| ${n} \\| [+−]?[0-9.]+% ± [0-9.]+ \\|`));
  assert.match(report, /\| 3 \| [0-9.]+ → [0-9.]+ \| [+−]?[0-9.]+% \|/);
  assert.match(report, /\*\*(DANN lowers|DANN is worse|Mixed)/);
  const json = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.deepEqual(json.seeds.map((s: { seed: number }) => s.seed), [3, 4]);
  for (const seed of json.seeds) {
    assert.equal(seed.rows.length, 3);
    for (const row of seed.rows) assert.equal(row.rmseChangePct < 0, row.dannRmse < row.baselineRmse);
  }
  for (const seed of [3, 4]) for (const run of ['source-only', 'dann']) assert.ok(existsSync(join(out, `seed-${seed}`, run, 'eval', 'scatter_num_particles.png')));
  // The source-only run really trained without the domain branch, and each seed trained its own runs.
  const so = readFileSync(join(out, 'seed-3', 'source-only', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.alpha !== undefined);
  assert.ok(so.every((x) => x.alpha === 0), 'source-only must run with the GRL off');
  const seedOf = (s: number) => JSON.parse(readFileSync(join(out, `seed-${s}`, 'dann', 'summary.json'), 'utf8'));
  assert.notDeepEqual(seedOf(3).final, seedOf(4).final);
});

test('compare --seeds rejects a malformed list with one line', () => {
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'compare', '--seeds', '0,x'], { encoding: 'utf8' });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr.trim(), /^ort-dann: --seeds 0,x: give distinct non-negative integers separated by commas, e\.g\. --seeds 0,1,2$/);
});
