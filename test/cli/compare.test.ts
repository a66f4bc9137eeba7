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

test('compare trains source-only and DANN on the same budget and reports target error for both', async () => {
  const artifacts = join(root, 'artifacts');
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 2 });
  const data = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 8, val: 6, sourceVal: 4, seed: 4 });
  const out = join(root, 'cmp');
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'compare', '--artifacts', artifacts, '--target', data.targetTrain, '--target-val', data.targetVal,
    '--target-labels', data.targetValLabels, '--batch-size', '2', '--source-size', '4', '--val-size', '2', '--epochs', '1', '--freeze-epochs', '0',
    '--threads', '2', '--wandb', 'disabled', '--out-dir', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const report = readFileSync(join(out, 'report.md'), 'utf8');
  for (const name of ['num_particles', 'planar_dist', 'depth_dist']) assert.match(report, new RegExp(`\\| ${name} \\| [0-9.e+-]+ \\| [0-9.e+-]+ \\|`));
  assert.match(report, /\*\*DANN (beats|does not beat) source-only/);
  const json = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.equal(json.rows.length, 3);
  for (const row of json.rows) assert.equal(row.better, row.dann < row.sourceOnly);
  for (const run of ['source-only', 'dann']) assert.ok(existsSync(join(out, run, 'eval', 'scatter_num_particles.png')));
  // The source-only run really trained without the domain branch.
  const so = readFileSync(join(out, 'source-only', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.alpha !== undefined);
  assert.ok(so.every((x) => x.alpha === 0), 'source-only must run with the GRL off');
});
