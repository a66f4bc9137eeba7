import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { EpochProgress } from '../../src/training/progress.ts';
import { EpochTable, Recorder, SmoothLoss, formatCell, formatTime } from '../../src/training/recorder.ts';
import type { LoopState } from '../../src/training/types.ts';

test('smoothed loss is the debiased EMA with beta 0.98', () => {
  const s = new SmoothLoss();
  assert.equal(s.value, undefined);
  const losses = [3, 2.5, 2.7, 1.9, 2.2, 1.1];
  let ema = 0;
  losses.forEach((l, i) => {
    ema = 0.98 * ema + 0.02 * l;
    assert.ok(Math.abs(s.add(l) - ema / (1 - 0.98 ** (i + 1))) < 1e-12);
  });
  assert.ok(Math.abs(new SmoothLoss().add(4.2) - 4.2) < 1e-12);
  s.reset();
  assert.equal(s.count, 0);
  assert.ok(Math.abs(s.add(7) - 7) < 1e-12);
});

test('time and cells are written as fastai writes them', () => {
  assert.equal(formatTime(0), '00:00');
  assert.equal(formatTime(65.9), '01:05');
  assert.equal(formatTime(3725), '1:02:05');
  assert.equal(formatCell(0.1234567), '0.123457');
  assert.equal(formatCell(1), '1.000000');
  assert.equal(formatCell(NaN), 'nan');
  assert.equal(formatCell(undefined), 'None');
  const t = new EpochTable(['epoch', 'train_loss', 'valid_loss', 'time']);
  assert.equal(t.header(), 'epoch     train_loss  valid_loss  time      ');
  assert.equal(t.row(['0', 0.5, 0.25, '00:14']), '0         0.500000    0.250000    00:14     ');
  // A value wider than its column is still separated from the next one.
  const dev = new EpochTable(['epoch', 'dev', 'time']);
  assert.equal(dev.row(['1', -22.526799, '00:30']), '1         -22.526799 00:30     ');
});

function state(over: Partial<LoopState>): LoopState {
  return { epoch: 0, epochFloat: 0, step: 0, totalSteps: 4, progress: 0, alpha: 0, lambdaDomain: 0.1, hypers: [], elapsed: 0, ...over };
}

test('Recorder fills smoothLoss and writes the epoch table with metrics in order', () => {
  const lines: string[] = [];
  let clock = 0;
  const rec = new Recorder({ write: (l) => lines.push(l), now: () => clock });
  const hypers = [{ lr: 1e-4, mom: 0.9, sqrMom: 0.99, wd: 0.01, eps: 1e-5 }, { lr: 1e-3, mom: 0.9, sqrMom: 0.99, wd: 0.01, eps: 1e-5 }];
  rec.beforeFit();
  for (const epoch of [0, 1]) {
    rec.beforeEpoch();
    for (const loss of [2, 1]) {
      const s = state({ epoch, loss, hypers });
      rec.afterBatch(s);
      assert.equal(s.smoothLoss, rec.smooth.value);
    }
    clock += 75_000;
    rec.afterEpoch(state({ epoch, metrics: { rmse_a: 0.5, valid_loss: 0.75, domain_accuracy: 0.5 } }));
  }
  assert.deepEqual(rec.lrs, [1e-3, 1e-3, 1e-3, 1e-3]);
  assert.equal(rec.losses.length, 4);
  assert.equal(lines.length, 3);
  assert.equal(lines[0].trimEnd(), 'epoch     train_loss  valid_loss  rmse_a    domain_accuracy  time');
  const smooth = new SmoothLoss();
  [2, 1, 2].forEach((l) => smooth.add(l));
  const fourth = smooth.add(1);
  assert.equal(lines[2], `2         ${fourth.toFixed(6)}    0.750000    0.500000  0.500000         01:15     `);
  assert.deepEqual(rec.rows[1], { epoch: '2', train_loss: fourth, valid_loss: 0.75, rmse_a: 0.5, domain_accuracy: 0.5, time: '01:15' });

  // A second fit (fine_tune's unfrozen phase) restarts the smoothing and prints its own header.
  rec.beforeFit();
  rec.beforeEpoch();
  rec.afterBatch(state({ loss: 3, hypers }));
  rec.afterEpoch(state({ metrics: { valid_loss: 1, rmse_a: 2, domain_accuracy: 0.5 } }));
  assert.equal(lines.length, 5);
  assert.equal(lines[3], lines[0]);
  assert.ok(lines[4].startsWith('1         3.000000    1.000000    2.000000  0.500000'));
});

/** A stream that records what is written, optionally claiming to be a terminal. */
function sink(isTTY: boolean) {
  const out: string[] = [];
  const s = Object.assign(new PassThrough(), { isTTY, columns: 120 });
  s.on('data', (d: Buffer) => out.push(d.toString()));
  return { stream: s, text: () => out.join('') };
}

test('progress without a TTY writes a periodic line, or nothing when asked', () => {
  let clock = 0;
  const { stream, text } = sink(false);
  const p = new EpochProgress({ stepsPerEpoch: 10, epochs: 3, stream, lineEverySec: 5, now: () => clock });
  p.beforeEpoch(state({ epoch: 1, step: 10 }));
  for (let k = 1; k <= 10; k++) {
    clock += 2000;
    p.afterBatch(state({ epoch: 1, step: 10 + k, smoothLoss: 0.123456 }));
  }
  p.afterEpoch();
  assert.equal(text(), ['epoch 2/3 step 3/10 [00:06<00:14 0.1235]', 'epoch 2/3 step 6/10 [00:12<00:08 0.1235]', 'epoch 2/3 step 9/10 [00:18<00:02 0.1235]', ''].join('\n'));

  const quiet = sink(false);
  const q = new EpochProgress({ stepsPerEpoch: 4, epochs: 1, stream: quiet.stream, lineEverySec: 0, now: () => (clock += 60_000) });
  q.beforeEpoch(state({}));
  for (let k = 1; k <= 4; k++) q.afterBatch(state({ step: k, loss: 1 }));
  assert.equal(quiet.text(), '');
});

test('progress on a TTY draws a cli-progress bar with steps and loss', () => {
  const { stream, text } = sink(true);
  const p = new EpochProgress({ stepsPerEpoch: 4, epochs: 2, stream });
  p.beforeEpoch(state({}));
  assert.match(text(), /Epoch 1\/2 \|-{30}\| 0\/4 \[00:00<--:--\]/);
  for (let k = 1; k <= 4; k++) p.afterBatch(state({ step: k, loss: 0.25 }));
  // The last batch renders the full bar, then stops and clears it for the table row.
  assert.match(text(), /Epoch 1\/2 \|█{30}\| 4\/4 \[00:00<00:00 0\.2500\]/);
  p.afterFit();
});
