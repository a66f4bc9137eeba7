/**
 * DANN on backbones other than ResNet, as a user runs it: build-artifacts --backbone mobilenet_v3_small or vgg11_bn,
 * a short train run (which exports model.onnx), then predict with the exported model. Gradient parity
 * of these artifacts with PyTorch is in parity.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { generateDemoData } from '../../src/data/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-backbones-'));
after(() => rmSync(root, { recursive: true, force: true }));

function cli(args: string[]): string {
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `ort-dann ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
}

const BACKBONES = [
  // torchvision's names under the seed's FeatureExtractor (children()[:-2] of the body = `features`).
  { backbone: 'mobilenet_v3_small', features: 576, param: 'feature_extractor.resnet_layers.0.1.block.1.fc1.weight', buffer: 'feature_extractor.resnet_layers.0.12.1.running_var' },
  { backbone: 'vgg11_bn', features: 512, param: 'feature_extractor.resnet_layers.0.25.weight', buffer: 'feature_extractor.resnet_layers.0.26.running_var' },
];

for (const { backbone, features, param, buffer } of BACKBONES) {
  test(`${backbone}: build-artifacts, train two steps, export and predict`, async () => {
    const artifacts = join(root, `${backbone}-artifacts`);
    const built = cli(['build-artifacts', '--backbone', backbone, '--image-size', '128', '--out', artifacts]);
    assert.match(built, new RegExp(`${backbone} at 128 px, ${features} features`));
    const manifest = JSON.parse(readFileSync(join(artifacts, 'manifest.json'), 'utf8'));
    assert.ok(manifest.parameters.some((p: { name: string }) => p.name === param));

    const data = await generateDemoData({ out: join(root, `${backbone}-demo`), size: 128, train: 4, val: 4, sourceVal: 4, seed: 1 });
    const run = join(root, `${backbone}-run`);
    cli(['train', '--artifacts', artifacts, '--source', data.sourceVal!, '--source-val', data.sourceVal!, '--target', data.targetTrain,
      '--target-val', data.targetVal, '--batch-size', '2', '--source-size', '4', '--val-size', '4', '--epochs', '1', '--freeze-epochs', '0',
      '--threads', '2', '--wandb', 'disabled', '--run-dir', run]);
    const rows = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const losses = rows.filter((r) => r.raw_loss !== undefined).map((r) => r.raw_loss as number);
    assert.equal(losses.length, 2);
    assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
    const { tensors } = await readSafetensors(join(run, 'latest', 'model.safetensors'));
    assert.ok(tensors.has(buffer), 'the checkpoint keeps PyTorch names');

    const model = join(run, 'model.onnx');
    assert.ok(existsSync(model));
    const csv = cli(['predict', '--model', model, join(data.sourceVal!, 'images')]).trim().split('\n');
    assert.equal(csv.length, 1 + 4, csv.join('\n'));
    for (const row of csv.slice(1)) assert.ok(row.split(',').slice(1).every((v) => v !== '' && Number.isFinite(Number(v))), row);
  });
}
