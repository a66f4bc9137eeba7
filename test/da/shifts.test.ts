import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ArraySource, renderSplit, SHIFTS } from '../../src/data/shifts.ts';

const S = 100;

for (const shift of Object.values(SHIFTS)) {
  test(`${shift.name}: samples depend only on (seed, split, index); labels in [0, 1]; the domains differ`, () => {
    const a = renderSplit(shift, 'source', 'train', 6, S, 3);
    const b = renderSplit(shift, 'source', 'train', 3, S, 3);
    assert.deepEqual(a.images.subarray(0, b.images.length), b.images);
    assert.deepEqual(a.labels.subarray(0, b.labels.length), b.labels);
    assert.notDeepEqual(renderSplit(shift, 'source', 'val', 3, S, 3).labels, b.labels);
    assert.equal(a.labels.length, 6 * shift.outputs.length);
    assert.ok(a.labels.every((v) => v >= 0 && v <= 1));
    assert.ok(a.images.every((v) => v >= 0 && v <= 1));
    // Same factors on both sides: the target of sample i has the labels of source sample i only by chance,
    // but the mean image brightness separates the domains in every case we render.
    const t = renderSplit(shift, 'target', 'train', 6, S, 3);
    const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
    assert.ok(Math.abs(mean(t.images) - mean(a.images)) > 0.05, `${shift.name}: source mean ${mean(a.images)}, target ${mean(t.images)}`);
  });
}

test('ArraySource: a fresh permutation per epoch, and a batch running past the end continues with the next pass', async () => {
  const data = renderSplit(SHIFTS.sprites, 'source', 'train', 5, S, 0);
  const src = new ArraySource('s', data, { seed: 1 });
  src.startEpoch(0);
  const first = (await src.nextBatch(5)).ids!.map(Number);
  assert.deepEqual([...first].sort(), [0, 1, 2, 3, 4]);
  const wrapped = (await src.nextBatch(5)).ids!.map(Number);
  assert.deepEqual([...wrapped].sort(), [0, 1, 2, 3, 4]);
  src.startEpoch(0);
  assert.deepEqual((await src.nextBatch(5)).ids!.map(Number), first, 'same epoch, same order');
  const orders = new Set<string>();
  for (let e = 1; e < 6; e++) {
    src.startEpoch(e);
    orders.add((await src.nextBatch(5)).ids!.join());
  }
  assert.ok(orders.size > 1, 'epochs reshuffle');
  const batch = await new ArraySource('v', data, { seed: 1, shuffle: false }).nextBatch(2);
  assert.deepEqual(batch.images, data.images.subarray(0, 2 * 3 * S * S));
  assert.deepEqual(batch.labels, data.labels.subarray(0, 6));
});
