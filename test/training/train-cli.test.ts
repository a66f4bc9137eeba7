/**
 * The train command end to end, as a user runs it (subprocess): a short run on tiny data lowers the
 * loss and exports a model; a run killed after its first epoch and resumed ends with exactly the
 * parameters of an uninterrupted run; bad flags fail with one line.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateDemoData } from '../../src/data/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';

const root = mkdtempSync(join(tmpdir(), 'ort-dann-train-'));
const artifacts = join(root, 'artifacts');
let data: Awaited<ReturnType<typeof generateDemoData>>;
after(() => rmSync(root, { recursive: true, force: true }));
before(async () => {
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 3 });
  data = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 8, val: 4, sourceVal: 8, seed: 1 });
});

const cli = (args: string[]) => ['bin/ort-dann.js', 'train', '--artifacts', artifacts, '--source', data.sourceVal!, '--source-val', data.sourceVal!,
  '--target', data.targetTrain, '--target-val', data.targetVal, '--target-labels', data.targetValLabels,
  '--batch-size', '2', '--source-size', '8', '--val-size', '4', '--threads', '2', '--wandb', 'disabled', ...args];

function train(args: string[]) {
  const r = spawnSync(process.execPath, cli(args), { encoding: 'utf8' });
  assert.equal(r.status, 0, `train failed: ${r.stderr}`);
  return r.stdout;
}

async function params(runDir: string, which: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await readSafetensors(join(runDir, which, 'model.safetensors'));
  return new Map([...tensors].filter(([, t]) => t.dtype === 'F32').map(([k, t]) => [k, t.data as Float32Array]));
}

test('a short run lowers the training loss, logs the seed\'s metrics and exports a model', async () => {
  const runDir = join(root, 'short');
  train(['--run-dir', runDir, '--epochs', '3', '--freeze-epochs', '1', '--lr', '1e-2']);
  const rows = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const losses = rows.filter((r) => r.raw_loss !== undefined).map((r) => r.raw_loss as number);
  assert.equal(losses.length, 16);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)), `loss did not go down: ${losses.map((l) => l.toFixed(2)).join(' ')}`);
  const last = rows.filter((r) => r.valid_loss !== undefined).at(-1);
  for (const key of ['valid_loss', 'rmse_num_particles', 'rmse_planar_dist', 'rmse_depth_dist', 'domain_accuracy', 'target_rmse_num_particles', 'target_mae_depth_dist']) assert.ok(key in last, `no ${key} logged`);
  for (const key of ['regression_loss', 'domain_loss', 'train_loss', 'alpha', 'lr_0', 'mom_0']) assert.ok(key in rows.find((r) => r.raw_loss !== undefined), `no ${key} logged`);
  assert.ok(existsSync(join(runDir, 'model.onnx')));
  assert.ok(existsSync(join(runDir, 'best', 'model.safetensors')));
});

test('a run killed after an epoch and resumed ends with the parameters of an uninterrupted run', async () => {
  const whole = join(root, 'whole');
  const args = ['--epochs', '1', '--freeze-epochs', '1', '--seed', '5'];
  train(['--run-dir', whole, ...args]);

  const killed = join(root, 'killed');
  const child = spawn(process.execPath, cli(['--run-dir', killed, ...args]), { stdio: ['ignore', 'pipe', 'pipe'] });
  // Kill as soon as the first epoch's checkpoint exists: mid-epoch 2, no chance to save.
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (existsSync(join(killed, 'latest', 'optimizer.safetensors'))) {
        clearInterval(poll);
        child.kill('SIGKILL');
      }
    }, 20);
    child.on('exit', () => { clearInterval(poll); resolve(); });
    child.on('error', reject);
  });
  assert.ok(!existsSync(join(killed, 'model.onnx')), 'the run was meant to be killed before it finished');
  train(['--run-dir', killed, ...args, '--resume']);
  const [a, b] = [await params(whole, 'latest'), await params(killed, 'latest')];
  for (const [name, values] of a) assert.deepEqual(b.get(name), values, `${name} differs after resume`);
});

test('bad flags fail with one line naming the flag', () => {
  const cases: [string[], RegExp][] = [
    [['--batch-size', '0'], /--batch-size 0: must be an integer from 1 to 4096/],
    [['--lr', 'fast'], /--lr fast: give a positive number/],
    [['--bogus'], /Unknown argument: bogus/],
    [['--resume', '--run-dir', join(root, 'nothing-here')], /--resume: .* holds no checkpoint/],
    [['--monitor', 'nope', '--epochs', '1', '--freeze-epochs', '0', '--run-dir', join(root, 'mon')], /--monitor nope: no such metric/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(process.execPath, cli(args), { encoding: 'utf8' });
    assert.notEqual(r.status, 0, `${args.join(' ')} should fail`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected, got: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  }
});

test('callbacks see one beforeEpoch per epoch, and a resumed run one for its partial epoch', async () => {
  const { fit } = await import('../../src/training/loop.ts');
  const { SaveCheckpoints } = await import('../../src/training/callbacks.ts');
  const { fineTuneDannPlan } = await import('../../src/training/schedules.ts');
  const { TrainingSession } = await import('../../src/training/session.ts');
  const { openSource, openTarget } = await import('../../src/data/index.ts');
  const session = await TrainingSession.fromArtifacts(artifacts, { threads: 2 });
  const open = async () => ({
    source: await openSource(data.sourceVal!, { size: 128, seed: 0 }),
    sourceVal: await openSource(data.sourceVal!, { size: 128, seed: 0, split: 'val' }),
    target: await openTarget(data.targetTrain, { size: 128 }),
    targetVal: await openTarget(data.targetVal, { size: 128, split: 'val' }),
  });
  const run = async (runDir: string, resume?: Parameters<typeof fit>[0]['resume']) => {
    const events: string[] = [];
    mkdirSync(runDir, { recursive: true });
    const s = await open();
    const plan = fineTuneDannPlan({ epochs: 2, freezeEpochs: 1, nGroups: session.groupCount, nIter: 2 });
    await fit({
      session, ...s, batchSize: 2, valSteps: 1, plan, lambdaDomain: 0.1, resume,
      callbacks: [
        { name: 'spy', beforeEpoch: (st) => { events.push(`epoch ${st.epoch} at ${st.step}`); }, afterBatch: (st) => { events.push(`step ${st.step}`); } },
        new SaveCheckpoints({ session, runDir, monitor: { name: 'valid_loss', direction: 'min' }, resume }),
      ],
    });
    await Promise.all(Object.values(s).map((x) => x.close()));
    return events;
  };
  try {
    const events = await run(join(root, 'spy'));
    assert.deepEqual(events.filter((e) => e.startsWith('epoch')), ['epoch 0 at 0', 'epoch 1 at 2', 'epoch 2 at 4']);
    const resumed = await run(join(root, 'spy-resumed'), { step: 3, sources: {} });
    assert.deepEqual(resumed.filter((e) => e.startsWith('epoch')), ['epoch 1 at 3', 'epoch 2 at 4']);
  } finally {
    await session.release();
  }
});

test('lr-find takes the data flags, writes lr_find.png into --out-dir and restores nothing it should not', () => {
  const out = join(root, 'lr-find');
  const r = spawnSync(process.execPath, ['bin/ort-dann.js', 'lr-find', '--artifacts', artifacts, '--source', data.sourceVal!, '--source-val', data.sourceVal!,
    '--target', data.targetTrain, '--target-val', data.targetVal, '--batch-size', '2', '--threads', '2', '--out-dir', out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /lr_find: valley at \d\.\d\de-\d+ after \d+ batches/);
  assert.ok(existsSync(join(out, 'lr_find.png')));
  assert.ok(!existsSync(join(out, '.lr-find-state')), 'the saved state is removed after the restore');
});
