/**
 * Fault tests of the safety guards on the real CLI: two processes on one run directory, a lock left by
 * a killed run, weights made non-finite by a resumed run, a run's remembered flags and its best/
 * checkpoint without optimizer state. (Refusals to overwrite, user-code timeouts and file-system
 * errors are catalogue cases: cases.ts.)
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildFixture, contentHashes, runCli, STACK_FRAME, trainBase, type CliResult, type Fixture } from './harness.ts';

let f: Fixture;
before(async () => {
  f = await buildFixture({ prefix: 'ort-dann-safety-' });
});
after(() => f?.close());

function oneLine(r: CliResult): string {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line expected on stderr, got:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, STACK_FRAME);
  return lines[0];
}

/** Resolves once `file` exists (polling), or rejects after `ms`. */
async function appears(file: string, ms = 240_000): Promise<void> {
  for (const until = Date.now() + ms; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) if (existsSync(file)) return;
  throw new Error(`${file} did not appear`);
}

test('a second training into a run directory in use exits 1 with one line; the first finishes alone', async () => {
  const runDir = join(f.root, 'shared');
  // Six steps: long enough for the second process to start while the first holds the lock.
  const first = runCli(f, [...trainBase(f, runDir), '--source-size', '12', '--epochs', '1']);
  await appears(join(runDir, '.lock'));
  const second = await runCli(f, trainBase(f, runDir));
  assert.equal(second.code, 1);
  assert.match(oneLine(second), new RegExp(`^ort-dann: --run-dir .*/shared is in use by process \\d+ \\(started [\\dT:.Z-]+\\); wait for it to finish or choose another --run-dir$`));
  const r = await first;
  assert.equal(r.code, 0, r.stderr);
  // Only the first run's six steps and one epoch are in metrics.jsonl, and the lock is gone.
  const steps = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)._step);
  assert.equal(Math.max(...steps), 6);
  assert.ok(!existsSync(join(runDir, '.lock')));
});

test('the lock of a SIGKILLed run is taken over with a warning', async () => {
  const runDir = join(f.root, 'killed');
  const killed = await runCli(f, trainBase(f, runDir), {
    onSpawn: (child) => { void appears(join(runDir, '.lock')).then(() => child.kill('SIGKILL')); },
  });
  assert.equal(killed.signal, 'SIGKILL');
  assert.ok(existsSync(join(runDir, '.lock')), 'SIGKILL leaves the lock behind');
  const r = await runCli(f, trainBase(f, runDir));
  assert.equal(r.code, 0, r.stderr);
  assert.match(oneLine(r), /^ort-dann: warning: --run-dir .*\/killed was locked by process \d+ \(started .+\), which is gone; taking the run over$/);
  assert.ok(existsSync(join(runDir, 'model.onnx')));
});

test('weights made infinite by a resumed run: stopped at once, latest/, best/ and model.onnx unchanged', async () => {
  const runDir = join(f.root, 'diverge');
  const first = await runCli(f, trainBase(f, runDir));
  assert.equal(first.code, 0, first.stderr);
  const before = contentHashes([runDir]);
  const r = await runCli(f, [...trainBase(f, runDir), '--resume', '--epochs', '2', '--lr', '1e39']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(oneLine(r), /^ort-dann: step 2: the optimizer step made parameters NaN\/Inf; training stopped; the last good checkpoint is .*\/diverge\/latest \(lower --lr\)$/);
  const now = contentHashes([runDir]);
  for (const name of ['latest/model.safetensors', 'latest/optimizer.safetensors', 'best/model.safetensors', 'model.onnx']) {
    assert.equal(now.get(join(runDir, name)), before.get(join(runDir, name)), `${name} changed`);
  }
});

test('best/ holds the weights only; latest/ keeps the optimizer state for resuming', () => {
  const runDir = join(f.root, 'diverge');
  assert.deepEqual(readdirSync(join(runDir, 'best')), ['model.safetensors']);
  assert.deepEqual(readdirSync(join(runDir, 'latest')).sort(), ['model.safetensors', 'optimizer.safetensors']);
  assert.ok(statSync(join(runDir, 'latest', 'optimizer.safetensors')).size > statSync(join(runDir, 'best', 'model.safetensors')).size);
});

test('--resume remembers the run\'s flags (--wandb disabled, the data) and says when --epochs re-plans it', async () => {
  const runDir = join(f.root, 'diverge');
  // Only the run directory and the new epoch count: everything else comes from args.json.
  const r = await runCli(f, ['train', '--run-dir', runDir, '--resume', '--epochs', '2', '--threads', '2']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  assert.match(r.stdout, /^resume: the run was planned for 1 steps, now 2; the one-cycle schedule is re-planned and continues from step 1$/m);
  assert.ok(!existsSync(join(runDir, 'wandb')), 'the remembered --wandb disabled must keep W&B off');
  const again = await runCli(f, ['train', '--run-dir', runDir, '--resume', '--threads', '2']);
  assert.equal(again.code, 1);
  assert.match(oneLine(again), /^ort-dann: --resume: .*\/diverge has trained all 2 epochs of this plan \(step 2 of 2\); to train on, pass --epochs with more than 2 \(the schedule is then re-planned\)$/);
});

test('the Adam step reports non-finite parameters, on the calling thread and on workers', async () => {
  const { AdamStepper, sharedFloat32Array } = await import('../../src/training/adam.ts');
  for (const workers of [0, 2]) {
    const n = 64;
    const params = sharedFloat32Array(n).fill(0.5);
    const grads = sharedFloat32Array(n);
    for (let i = 0; i < n; i++) grads[i] = (i % 3) - 1 + 0.25;
    const adam = new AdamStepper({ params, grads, tensors: [{ name: 'w', offset: 0, size: n, group: 0, decay: true }], workers });
    try {
      const hyper = (lr: number) => [{ lr, mom: 0.9, sqrMom: 0.99, eps: 1e-5, wd: 0.01 }];
      assert.equal(await adam.step(hyper(1e-3), [true]), true, `workers ${workers}: a normal step`);
      // -lr/debias1 overflows float32: every updated parameter becomes ±Infinity.
      assert.equal(await adam.step(hyper(1e39), [true]), false, `workers ${workers}: a diverging step`);
      assert.ok(!params.every(Number.isFinite));
    } finally {
      await adam.close();
    }
  }
});

test('lr-find prints its progress and stops within --lr-find-batches', async () => {
  const outDir = join(f.root, 'lr-find');
  const args = ['--artifacts', f.artifacts, '--source', f.demo.sourceVal!, '--source-val', f.demo.sourceVal!, '--target', f.demo.targetTrain,
    '--target-val', f.demo.targetVal, '--batch-size', '2', '--threads', '2', '--out-dir', outDir];
  const r = await runCli(f, ['lr-find', ...args, '--lr-find-batches', '10']);
  const progress = r.stdout.split('\n').filter((l) => l.startsWith('lr_find: batch '));
  assert.ok(progress.length >= 2, r.stdout);
  assert.match(progress[0], /^lr_find: batch 1\/10 at lr 1\.0e-7 \(\d+ s\)$/);
  // Ten batches are enough for a suggestion or end in the one-line advice to give --lr.
  if (r.code === 0) assert.match(r.stdout, /lr_find: valley at [\d.e+-]+ after \d+ batches/);
  else assert.match(oneLine(r), /^ort-dann: --lr auto: lr_find stopped after \d+ batches without a suggestion/);
  assert.ok(Number(/after (\d+) batches/.exec(r.stdout + r.stderr)?.[1]) <= 10);
});
