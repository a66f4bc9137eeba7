import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdamStepper, adamBuffers, sharedFloat32Array, type AdamTensor } from '../../src/training/adam.ts';
import { simdModule } from '../../src/training/adam-simd.ts';
import { OneCycle } from '../../src/training/schedules.ts';
import { rng } from '../helpers/gradcheck.ts';

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** Tensors of every size mod 4 and unaligned offsets; grads over 12 decades, some zero, subnormal, or huge. */
function scenario() {
  const sizes = [1, 2, 3, 4, 5, 7, 64, 333, 1001, 4099, 0, 6];
  let offset = 0;
  const tensors: AdamTensor[] = sizes.map((size, i) => {
    const t = { name: `t${i}`, offset, size, group: i % 3, decay: i % 2 === 0 };
    offset += size;
    return t;
  });
  const rand = rng(7);
  const p0 = Float32Array.from({ length: offset }, () => (rand() * 2 - 1) * 10 ** (rand() * 4 - 2));
  const special = [0, -0, 1e-40, -3e-39, 3e38, -1e-45];
  const grads = Array.from({ length: 6 }, (_, k) =>
    Float32Array.from({ length: offset }, (_, i) => (i % 97 === k ? special[(i + k) % special.length] : (rand() - 0.5) * 10 ** (rand() * 12 - 9))),
  );
  return { n: offset, tensors, p0, grads };
}

async function run(s: ReturnType<typeof scenario>, simd: boolean, workers: number) {
  const { params, grads } = simd ? adamBuffers(s.n) : { params: sharedFloat32Array(s.n), grads: sharedFloat32Array(s.n) };
  params.set(s.p0);
  const adam = new AdamStepper({ params, grads, tensors: s.tensors, workers });
  const sched = new OneCycle({ lrMax: [1e-3, 1e-2, 3e-1], nEpoch: 1, nIter: s.grads.length });
  try {
    for (let k = 0; k < s.grads.length; k++) {
      grads.set(s.grads[k]);
      const hypers = sched.hypers(k);
      hypers[1].wd = 0;
      await adam.step(hypers, s.tensors.map((_, i) => !(i === 3 && k < 2)));
    }
    return { p: params.slice(), m: adam.expAvg.slice(), v: adam.expAvgSq.slice() };
  } finally {
    await adam.close();
  }
}

test('WebAssembly SIMD is available (Node ≥ 16.4), so the fast kernel runs', () => {
  assert.ok(simdModule(), 'the SIMD module failed validation');
});

test('the SIMD kernel is bit-identical to the scalar kernel, on the calling thread and on workers', async () => {
  const s = scenario();
  const ref = await run(s, false, 0);
  assert.ok(ref.p.some((x, i) => x !== s.p0[i]));
  for (const workers of [0, 1, 2, 3]) {
    const got = await run(s, true, workers);
    for (const key of ['p', 'm', 'v'] as const) {
      const i = ref[key].findIndex((x, k) => !Object.is(x, got[key][k]));
      assert.ok(bytes(ref[key]).equals(bytes(got[key])), `${key} differs with ${workers} workers at ${i}: ${ref[key][i]} vs ${got[key][i]}`);
    }
  }
});

test('a second stepper on the same adamBuffers falls back to its own moments', async () => {
  const t: AdamTensor[] = [{ name: 'x', offset: 0, size: 8, group: 0, decay: true }];
  const { params, grads } = adamBuffers(8);
  const a = new AdamStepper({ params, grads, tensors: t, workers: 0 });
  const b = new AdamStepper({ params, grads, tensors: t, workers: 0 });
  assert.notEqual(a.expAvg.buffer, b.expAvg.buffer);
  await Promise.all([a.close(), b.close()]);
});

test('the workers\' first touch of the shared buffers keeps what the caller stored', async () => {
  const n = 3 * 2 ** 20; // 12 MB per buffer: thousands of pages for each worker
  const tensors: AdamTensor[] = [{ name: 'w', offset: 0, size: n, group: 0, decay: true }];
  for (const { params, grads } of [adamBuffers(n), { params: sharedFloat32Array(n), grads: sharedFloat32Array(n) }]) {
    const adam = new AdamStepper({ params, grads, tensors, workers: 2 });
    try {
      // Stored while the workers start touching: a plain store of zeros there would erase these.
      params.fill(1.5);
      grads.fill(0.25);
      await adam.step([{ lr: 0, mom: 0.9, sqrMom: 0.99, wd: 0.01, eps: 1e-5 }], [true]);
      assert.ok(params.every((x) => x === 1.5), 'a parameter changed');
      assert.ok(grads.every((x) => x === 0.25), 'a gradient changed');
      assert.ok(adam.expAvg.every((x) => x === adam.expAvg[0]) && adam.expAvg[0] > 0, 'the first moments are not all equal');
    } finally {
      await adam.close();
    }
  }
});
