/**
 * The train-step bench on tiny settings: FLOP counts against the figures measured with PyTorch
 * hooks (docs/bench-reference.md), and one end-to-end run of both sides that checks
 * the JSON row's shape and arithmetic. No timing is asserted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { forwardGflopPerImage, trainGflopPerImage } from '../../bench/lib/flops.ts';
import { artifactsFor, benchTrainStep } from '../../bench/train-step.ts';
import { makeConfig } from '../../src/model/config.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-bench-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('FLOPs per image match the hook counts of the PyTorch model', () => {
  const c128 = makeConfig({ imageSize: 128 });
  const c256 = makeConfig({ imageSize: 256 });
  assert.equal(forwardGflopPerImage(c128).toFixed(4), '2.4013');
  assert.equal(forwardGflopPerImage(c256).toFixed(4), '9.6050');
  // 3 × forward − the stem's dX (2·3·64·49·64² = 0.0771 GFLOP), label head on half the rows.
  assert.equal(trainGflopPerImage(c128, 32, 16).toFixed(3), '7.126');
  assert.equal(trainGflopPerImage(c256, 16, 8).toFixed(3), '28.505');
  assert.ok(trainGflopPerImage(c128, 32, 32) > trainGflopPerImage(c128, 32, 16));
});

test('train-step runs ours and the torch peer and reports one row per config and thread count', async () => {
  const rows = await benchTrainStep(['--image-size', '100', '--batch', '1+1', '--steps', '1', '--warmup', '1', '--threads', '1,2', '--peer', 'torch', '--json', '--artifacts-root', root]);
  assert.deepEqual(rows.map((x) => x.threads), [1, 2]);
  const r = rows[1];
  assert.equal(r.image_size, 100);
  assert.equal(r.batch, '1+1');
  const positive = (key: keyof typeof r) => {
    const v = r[key];
    assert.ok(typeof v === 'number' && Number.isFinite(v) && v > 0, `${key} = ${v}`);
    return v;
  };
  for (const key of ['peak_rss_mb', 'peer_peak_rss_mb', 'startup_s', 'peer_startup_s', 'session_create_s', 'cpu_ms', 'peer_cpu_ms'] as const) positive(key);
  // Other processes' share of the cores while the steps were timed: measured on both sides (Linux).
  for (const key of ['other_cores', 'peer_other_cores'] as const) assert.ok(typeof r[key] === 'number' && r[key] >= 0, `${key} = ${r[key]}`);
  assert.equal(r.error, undefined);
  assert.equal(r.peer_error, undefined);
  const ours = positive('images_per_s');
  assert.ok(Math.abs(positive('ratio') - ours / positive('peer_images_per_s')) < 1e-9);
  assert.ok(Math.abs(positive('gflops') - ours * r.gflop_per_image) < 1e-9);
  assert.ok(Math.abs(ours - 2000 / positive('step_ms')) < 1e-9);
});

test('a side that cannot run is reported in its row, and the other side is still measured', async () => {
  const rows = await benchTrainStep(['--image-size', '100', '--batch', '1+1', '--steps', '1', '--warmup', '0', '--peer', 'torch', '--python', join(root, 'no-python'), '--json', '--artifacts-root', root]);
  const r = rows[0];
  assert.ok((r.images_per_s ?? 0) > 0);
  assert.equal(r.peer_images_per_s, null);
  assert.match(r.peer_error ?? '', /torch: cannot start/);
  assert.equal(r.ratio, null);
});

test('bench artifacts older than the compiler sources are rebuilt; fresh ones are kept', async () => {
  const dir = await artifactsFor(root, 100);
  const model = join(dir, 'training_model.onnx');
  const kept = statSync(model).mtimeMs;
  await artifactsFor(root, 100);
  assert.equal(statSync(model).mtimeMs, kept);
  utimesSync(model, new Date(0), new Date(0));
  await artifactsFor(root, 100);
  assert.ok(statSync(model).mtimeMs >= kept, 'artifacts dated before every source file must be rebuilt');
});
