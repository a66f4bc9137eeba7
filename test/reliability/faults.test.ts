/**
 * Faults during training, on the real CLI: Ctrl-C mid-epoch, SIGKILL inside a checkpoint write and
 * between its two renames, a full disk, and a loss that overflows. Each must end with a clear reason
 * and the last checkpoint intact, and resuming must land on exactly the parameters of a run that was
 * never disturbed.
 *
 * The tests share one interrupted run and build on each other in order (node:test runs a file's tests
 * sequentially): the reference run, then the interrupted run, then each fault on the same run
 * directory, then the resume that must match the reference.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import {
  buildFixture, checkpointParams, contentHashes, PRELOAD_ENOSPC, runCli, STACK_FRAME, trainBase, trainerState, type CliResult, type Fixture,
} from './harness.ts';

let f: Fixture;
const STEPS_PER_EPOCH = 6;
const TOTAL_STEPS = 2 * STEPS_PER_EPOCH;
/** One frozen and one unfrozen epoch of six steps: room to interrupt inside the second. */
const args = (runDir: string, ...more: string[]) => [...trainBase(f, runDir), '--source-size', String(2 * STEPS_PER_EPOCH), '--freeze-epochs', '1', '--seed', '5', ...more];

let whole: string;
let broken: string;

async function labelledFolder(dir: string, labels: number[][]): Promise<void> {
  mkdirSync(join(dir, 'images'), { recursive: true });
  const rows = ['filename,num_particles,planar_dist,depth_dist'];
  for (const [i, values] of labels.entries()) {
    const px = new Uint8Array(32 * 32 * 3).map((_, k) => (k * 7 + i * 29) % 256);
    await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(join(dir, 'images', `${i}.png`));
    rows.push(`${i}.png,${values.join(',')}`);
  }
  writeFileSync(join(dir, 'labels.csv'), `${rows.join('\n')}\n`);
}

before(async () => {
  f = await buildFixture({ prefix: 'ort-dann-faults-' });
  whole = join(f.root, 'whole');
  broken = join(f.root, 'broken');
  // 1e30 is a finite float32, but its squared error overflows: the loss of any batch holding it is Infinity.
  await labelledFolder(join(f.root, 'huge-labels'), Array.from({ length: 4 }, (_, i) => [1e30, i, 1]));
  await labelledFolder(join(f.root, 'one-huge-label'), Array.from({ length: 8 }, (_, i) => [i === 3 ? 1e30 : i + 1, 0.5, 0.25]));
});
after(() => f?.close());

function assertOneLine(r: CliResult, pattern: RegExp): void {
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected on stderr, got:\n${r.stderr}`);
  assert.match(r.stderr.trim(), pattern);
  assert.doesNotMatch(r.stderr, STACK_FRAME);
}

function leftovers(runDir: string): string[] {
  return readdirSync(runDir).filter((n) => /\.(tmp|old)-\d+$/.test(n));
}

test('reference: an uninterrupted run', async () => {
  const r = await runCli(f, args(whole));
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await trainerState(join(whole, 'latest'))).step, TOTAL_STEPS);
});

test('Ctrl-C during an epoch saves the latest checkpoint mid-epoch and exits 130', async () => {
  const metrics = join(broken, 'metrics.jsonl');
  const r = await runCli(f, args(broken), {
    onSpawn: (child) => {
      // Interrupt once a step of the second epoch is in metrics.jsonl (written as the next step logs).
      const poll = setInterval(() => {
        const text = existsSync(metrics) ? readFileSync(metrics, 'utf8') : '';
        if ([...text.matchAll(/"_step":\s*(\d+)/g)].some((m) => Number(m[1]) > STEPS_PER_EPOCH)) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 10);
      child.on('exit', () => clearInterval(poll));
    },
  });
  assert.equal(r.code, 130, `exit 130 expected, got ${r.code} ${r.signal}: ${r.stderr}`);
  assert.match(r.stderr, /interrupted; saving the latest checkpoint after this step/);
  assert.match(r.stdout, /stopped at step \d+\/12; continue with: npx ort-dann train --run-dir .* --resume/);
  const step = Number((await trainerState(join(broken, 'latest'))).step);
  assert.ok(step > STEPS_PER_EPOCH && step < TOTAL_STEPS, `the checkpoint should be inside the second epoch, is at step ${step}`);
  assert.ok(!existsSync(join(broken, 'model.onnx')), 'an interrupted run must not export');
});

test('a full disk (ENOSPC) while writing the checkpoint: one-line error, the previous checkpoint intact', async () => {
  const before = contentHashes([join(broken, 'latest')]);
  const r = await runCli(f, args(broken, '--resume'), { nodeArgs: ['--import', PRELOAD_ENOSPC], env: { ORT_DANN_TEST_ENOSPC: 'latest.tmp-' } });
  assert.equal(r.code, 1, r.stderr);
  assertOneLine(r, /^ort-dann: cannot write .*\/broken\/latest: no space left on the device \(ENOSPC\); free space in .*\/broken or choose another output path \(any previous latest is unchanged\)$/);
  assert.deepEqual(contentHashes([join(broken, 'latest')]), before);
  assert.deepEqual(leftovers(broken), [], 'the failed write must clean up after itself');
});

test('SIGKILL halfway through writing a checkpoint file: the previous checkpoint is intact and loads', async () => {
  const before = contentHashes([join(broken, 'latest')]);
  const r = await runCli(f, args(broken, '--resume'), { env: { ORT_DANN_TEST_KILL_DURING_WRITE: 'latest/optimizer.safetensors' } });
  assert.equal(r.signal, 'SIGKILL', `the test hook should have killed the run: ${r.code} ${r.stderr}`);
  assert.ok(leftovers(broken).some((n) => n.startsWith('latest.tmp-')), 'the kill should have hit the write of the new set');
  assert.deepEqual(contentHashes([join(broken, 'latest')]), before);
  assert.ok((await checkpointParams(join(broken, 'latest'))).size > 0);
});

test('SIGKILL between the two renames of a checkpoint swap: the next --resume recovers it', async () => {
  const r = await runCli(f, args(broken, '--resume'), { env: { ORT_DANN_TEST_KILL_DURING_WRITE: 'latest#swap' } });
  assert.equal(r.signal, 'SIGKILL', `the test hook should have killed the run: ${r.code} ${r.stderr}`);
  assert.ok(!existsSync(join(broken, 'latest')), 'killed between the renames, latest/ is briefly absent');
  assert.ok(leftovers(broken).some((n) => n.startsWith('latest.old-')), 'the old set waits under latest.old-<pid>');
});

test('after all of that, --resume finishes with exactly the parameters of the uninterrupted run', async () => {
  const r = await runCli(f, args(broken, '--resume'));
  assert.equal(r.code, 0, r.stderr);
  // The killed runs left their lock behind; taking it over is the one thing said.
  assert.match(r.stderr, /^(ort-dann: warning: --run-dir \S+ was locked by process \d+ \(started [^)]+\), which is gone; taking the run over\n)?$/);
  assert.deepEqual(leftovers(broken), []);
  assert.equal((await trainerState(join(broken, 'latest'))).step, TOTAL_STEPS);
  const [a, b] = [await checkpointParams(join(whole, 'latest')), await checkpointParams(join(broken, 'latest'))];
  assert.equal(b.size, a.size);
  for (const [name, values] of a) assert.deepEqual(b.get(name), values, `${name} differs from the uninterrupted run`);
});

test('an Infinity loss stops the run with the step number; the last good checkpoint is kept', async () => {
  // Continue the finished run for one more epoch on a source whose labels overflow the loss.
  const before = contentHashes([join(broken, 'latest'), join(broken, 'best')]);
  const r = await runCli(f, args(broken, '--resume', '--epochs', '2', '--source', join(f.root, 'huge-labels'), '--source-val', f.demo.sourceVal!));
  assert.equal(r.code, 1, r.stderr);
  assertOneLine(r, new RegExp(`^ort-dann: step ${TOTAL_STEPS + 1}: the loss is Infinity; training stopped; the last good checkpoint is .*/broken/latest \\(lower --lr, check labels, or pass --on-nan skip\\)$`));
  assert.deepEqual(contentHashes([join(broken, 'latest'), join(broken, 'best')]), before);
});

test('--on-nan skip leaves out the batches with an Infinity loss and trains on', async () => {
  const runDir = join(f.root, 'skip');
  // Every epoch serves all eight images once, so each epoch has exactly one batch with the 1e30 label.
  const r = await runCli(f, [...trainBase(f, runDir), '--source', join(f.root, 'one-huge-label'), '--source-val', f.demo.sourceVal!,
    // Raw MSE: standardized targets would scale the 1e30 label down to a finite loss.
    '--source-size', '8', '--epochs', '2', '--on-nan', 'skip', '--no-standardize-targets']);
  assert.equal(r.code, 0, r.stderr);
  const warnings = r.stderr.trim().split('\n');
  assert.equal(warnings.length, 2, r.stderr);
  for (const [k, w] of warnings.entries()) assert.match(w, new RegExp(`^ort-dann: warning: step \\d+: the loss or a gradient is NaN/Inf; batch skipped \\(${k + 1} so far\\)$`));
  assert.equal(JSON.parse(readFileSync(join(runDir, 'summary.json'), 'utf8')).skippedBatches, 2);
  for (const [name, values] of await checkpointParams(join(runDir, 'latest'))) {
    assert.ok(values.every(Number.isFinite), `${name} has non-finite values: a skipped batch reached the weights`);
  }
});
