/**
 * graph-ab on tiny artifacts: the result's shape and arithmetic, and a refusal of builds of different
 * models. No timing is asserted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { benchGraphAb } from '../../bench/graph-ab.ts';
import { UserError } from '../../src/errors.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-graph-ab-'));
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  for (const size of [100, 128]) {
    await buildArtifacts({ config: makeConfig({ imageSize: size, backbone: 'resnet18' }), out: join(root, `a${size}`), weights: 'none', weightsCache: root, seed: 1 });
  }
});

test('graph-ab times both graphs in turns and reports per-pair ratios', async () => {
  const dir = join(root, 'a100');
  const r = await benchGraphAb(['--a', dir, '--b', dir, '--batch', '2+2', '--threads', '1', '--pairs', '3', '--warmup', '1', '--json']);
  assert.equal(r.a_ms.length, 3);
  assert.equal(r.b_ms.length, 3);
  for (const [k, ratio] of r.ratios.entries()) assert.equal(ratio, r.b_ms[k] / r.a_ms[k]);
  assert.ok(r.a_ms.every((t) => t > 0) && r.b_ms.every((t) => t > 0));
  assert.equal(r.median_ratio, [...r.ratios].sort((x, y) => x - y)[1]);
  assert.equal(r.b_faster, r.ratios.filter((x) => x < 1).length);
});

test('graph-ab refuses builds of different models, and missing folders, in one line', async () => {
  await assert.rejects(benchGraphAb(['--a', join(root, 'a100'), '--b', join(root, 'a128'), '--batch', '2+2', '--pairs', '1']),
    (e: Error) => e instanceof UserError && /takes 128 px images .* 100 px .*; compare builds of the same model$/.test(e.message));
  await assert.rejects(benchGraphAb(['--a', join(root, 'a100')]), (e: Error) => e instanceof UserError && /give both --a DIR and --b DIR/.test(e.message));
  await assert.rejects(benchGraphAb(['--a', join(root, 'a100'), '--b', join(root, 'nowhere')]), (e: Error) => e instanceof UserError && /nowhere/.test(e.message));
});
