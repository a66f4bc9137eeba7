import assert from 'node:assert/strict';
import { test } from 'node:test';
import pngjs from 'pngjs';
import { lrFind, plotLrFind, suggestValley, valley } from '../../src/training/lr-find.ts';
import { runPythonJson } from '../io/python.ts';

/** Flat, then a descent centred near 3e-4, then divergence past ~0.1; a little deterministic wobble. */
const curve = (lr: number) => {
  const x = Math.log10(lr);
  return (2 - 1.2 / (1 + Math.exp(-3 * (x + 3.5))) + Math.exp(2.5 * (x + 0.8))) * (1 + 0.01 * Math.sin(lr * 1e7));
};

test('lr_find: exponential lrs, smoothed losses, stop at 4x the best smoothed loss', async () => {
  const seen: number[] = [];
  const r = await lrFind(async (lr, it) => {
    assert.equal(it, seen.length);
    seen.push(lr);
    return curve(lr);
  });
  assert.equal(r.stoppedBy, 'divergence');
  assert.ok(r.lrs.length < 100);
  r.lrs.forEach((lr, i) => assert.ok(Math.abs(lr - 1e-7 * 1e8 ** (i / 100)) <= 1e-12 * lr));
  assert.deepEqual(seen, r.lrs);

  let val = 0;
  r.rawLosses.forEach((raw, i) => {
    val = 0.98 * val + 0.02 * raw;
    assert.ok(Math.abs(r.losses[i] - val / (1 - 0.98 ** (i + 1))) < 1e-12);
  });
  const best = (k: number) => Math.min(...r.losses.slice(0, k + 1));
  const last = r.losses.length - 1;
  assert.ok(r.losses[last] > 4 * best(last));
  assert.ok(r.losses.slice(0, last).every((l, i) => !(l > 4 * best(i))));

  // The suggestion comes from lrs[10:-5] and sits on the descent, below the loss minimum.
  const v = r.valley!;
  assert.ok(v.index >= 10 && v.index < r.lrs.length - 5);
  assert.equal(v.lr, Math.fround(r.lrs[v.index]));
  const argmin = r.losses.indexOf(Math.min(...r.losses));
  assert.ok(v.lr > 1e-5 && v.lr < r.lrs[argmin], `valley ${v.lr}`);
});

test('lr_find runs num_it batches without divergence, and at least 6', async () => {
  const r = await lrFind(async () => 1, { numIt: 30 });
  assert.equal(r.stoppedBy, 'num_it');
  assert.equal(r.lrs.length, 30);
  const short = await lrFind(async () => 1, { numIt: 3 });
  assert.equal(short.lrs.length, 6);
  assert.equal(short.valley?.index, 0);
  const noStop = await lrFind(async (lr) => (lr > 1e-3 ? 100 : 1), { numIt: 50, stopDiv: false });
  assert.equal(noStop.lrs.length, 50);
});

test('valley on hand-worked curves', () => {
  // Strictly decreasing run of 5 from index 0: fastai's start is one before it (−1), idx = −1 + 1 + 0.
  assert.equal(valley([5, 4, 3, 2, 1, 2, 3]), 0);
  // Longest decreasing run ends at index 7 (length 6): start 1, sections 2 → idx 1 + 2 + 1 = 4.
  assert.equal(valley([1, 9, 8, 7, 6, 5, 6, 4, 5, 6]), 4);
  // Nothing decreases: fastai keeps start = end = 0.
  assert.equal(valley([1, 2, 3]), 0);
  assert.equal(valley([1]), 0);
  // A 2-long run from index 0 gives −1, which Python reads as the last element.
  assert.equal(valley([2, 1, 3, 4, 5]), 4);
  assert.throws(() => valley([]), RangeError);
});

test('valley agrees with fastai on random curves (Python reference)', () => {
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const curves = Array.from({ length: 60 }, (_, c) => Array.from({ length: 1 + (c % 30) * 3 }, () => Math.round(rand() * 20) / 4));
  const ref = runPythonJson<number[]>(
    `
import json, sys
# fastai's valley loop: lds DP with the best end updated inside the inner loop; Python indexing of idx.
def valley(losses):
    n = len(losses); max_start = max_end = 0; lds = [1] * n
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1: lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]: max_end = i; max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return (max_start + int(sections) + int(sections / 2)) % n
print(json.dumps([valley(c) for c in json.load(sys.stdin)]))
`,
    curves,
  );
  assert.deepEqual(curves.map(valley), ref);
});

test('the suggestion window drops numIt//10 at the start, 5 at the end, and everything from the first NaN', () => {
  const lrs = Array.from({ length: 40 }, (_, i) => 1e-6 * 1.5 ** i);
  const losses = lrs.map((_, i) => 10 - i);
  assert.equal(suggestValley(lrs, losses, 40)?.index, 4 + valley(losses.slice(4, 35)));
  losses[20] = NaN;
  assert.equal(suggestValley(lrs, losses, 40)?.index, 4 + valley(losses.slice(4, 20)));
  assert.equal(suggestValley(lrs.slice(0, 9), losses.slice(0, 9), 100), undefined);
});

test('the lr_find plot is a PNG with the curve and the suggestion marker', async () => {
  const r = await lrFind(async (lr) => curve(lr));
  const png = pngjs.PNG.sync.read(plotLrFind(r, { width: 640, height: 400 }));
  assert.deepEqual([png.width, png.height], [640, 400]);
  const count = (rgb: [number, number, number]) => {
    let n = 0;
    for (let i = 0; i < png.data.length; i += 4) if (png.data[i] === rgb[0] && png.data[i + 1] === rgb[1] && png.data[i + 2] === rgb[2]) n++;
    return n;
  };
  assert.ok(count([31, 119, 180]) > 500, 'curve pixels');
  assert.ok(count([214, 39, 40]) > 100, 'marker pixels');
  assert.ok(count([0, 0, 0]) > 1000, 'axes and labels');
  // Without a suggestion there is no marker.
  const bare = pngjs.PNG.sync.read(plotLrFind({ ...r, valley: undefined }));
  let red = 0;
  for (let i = 0; i < bare.data.length; i += 4) if (bare.data[i] === 214 && bare.data[i + 1] === 39) red++;
  assert.equal(red, 0);
});
