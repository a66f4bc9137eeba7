import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRng } from '../../src/rng.ts';

const draws = (r: ReturnType<typeof createRng>, n = 8) => Array.from({ length: n }, () => r.uint32());

test('same seed and stream names give the same draws; different ones differ', () => {
  assert.deepEqual(draws(createRng(7).fork('a').at(3)), draws(createRng(7).fork('a').at(3)));
  assert.deepEqual(draws(createRng('run-x')), draws(createRng('run-x')));
  const variants = [createRng(8).fork('a').at(3), createRng(7).fork('b').at(3), createRng(7).fork('a').at(4), createRng(7).fork('a'), createRng(7)];
  const reference = draws(createRng(7).fork('a').at(3)).join();
  for (const r of variants) assert.notEqual(draws(r).join(), reference);
});

test('deriving a child does not disturb the parent stream', () => {
  const a = createRng(1);
  const b = createRng(1);
  a.fork('x').uint32();
  a.at(5);
  assert.deepEqual(draws(a), draws(b));
});

test('uniform, normal and poisson have the right moments', () => {
  const r = createRng(123);
  const n = 40000;
  let s = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    s += u;
    s2 += u * u;
  }
  assert.ok(Math.abs(s / n - 0.5) < 0.01);
  assert.ok(Math.abs(s2 / n - 0.25 - 1 / 12) < 0.01);
  s = 0;
  s2 = 0;
  for (let i = 0; i < n; i++) {
    const z = r.normal(2, 3);
    s += z;
    s2 += (z - 2) ** 2;
  }
  assert.ok(Math.abs(s / n - 2) < 0.06);
  assert.ok(Math.abs(Math.sqrt(s2 / n) - 3) < 0.06);
  for (const lambda of [0.5, 4, 30, 400]) {
    let m = 0;
    let v = 0;
    const xs = Array.from({ length: 20000 }, () => r.poisson(lambda));
    for (const x of xs) {
      assert.ok(Number.isInteger(x) && x >= 0);
      m += x;
    }
    m /= xs.length;
    for (const x of xs) v += (x - m) ** 2;
    v /= xs.length;
    assert.ok(Math.abs(m - lambda) < 0.05 * lambda + 0.03, `poisson(${lambda}) mean ${m}`);
    assert.ok(Math.abs(v - lambda) < 0.08 * lambda + 0.05, `poisson(${lambda}) variance ${v}`);
  }
});

test('int is inclusive and permutation is a permutation', () => {
  const r = createRng(5);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) seen.add(r.int(2, 6));
  assert.deepEqual([...seen].sort(), [2, 3, 4, 5, 6]);
  const p = r.permutation(50);
  assert.deepEqual([...p].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
});

test('dropoutMask drops about p and keeps the expectation at 1', () => {
  const m = createRng(9).fork('dropout').at(0).dropoutMask(new Float32Array(100000), 0.3);
  const zeros = m.filter((v) => v === 0).length / m.length;
  assert.ok(Math.abs(zeros - 0.3) < 0.01);
  assert.ok(m.every((v) => v === 0 || Math.abs(v - 1 / 0.7) < 1e-6));
  assert.ok(Math.abs(m.reduce((a, b) => a + b, 0) / m.length - 1) < 0.02);
});

test('addNormalNoise has the requested spread', () => {
  const x = createRng(2).addNormalNoise(new Float32Array(100001), 0.5);
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const sd = Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length);
  assert.ok(Math.abs(mean) < 0.01);
  assert.ok(Math.abs(sd - 0.5) < 0.01);
});

test('bad arguments are refused', () => {
  assert.throws(() => createRng(1.5), /seed must be an integer/);
  assert.throws(() => createRng(1).at(-1), /non-negative integer/);
  assert.throws(() => createRng(1).dropoutMask(new Float32Array(1), 1), /\[0, 1\)/);
});
