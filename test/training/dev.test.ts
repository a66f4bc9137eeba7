/** Deep embedded validation: the importance-weighted source loss with its control variate. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deepEmbeddedValidation } from '../../src/training/dev.ts';

test('DEV: equal weights give the plain mean loss; the estimate follows the rows that look like the target', () => {
  const losses = [1, 2, 3, 4];
  assert.equal(deepEmbeddedValidation(losses, [0, 0, 0, 0], 4, 4), 2.5);
  // Rows 3 and 4 look like the target (large logits) and have the large losses: the estimate rises.
  const dev = deepEmbeddedValidation(losses, [-2, -1, 1, 2], 4, 4);
  assert.ok(dev > 2.5, `${dev}`);
  // The formula by hand: w = exp(z), L = w·l, η = −Cov(L, w)/Var(w), DEV = mean(L) + η·mean(w) − η.
  const w = [-2, -1, 1, 2].map(Math.exp);
  const L = w.map((x, i) => x * losses[i]);
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const [mw, mL] = [mean(w), mean(L)];
  const eta = -mean(L.map((x, i) => (x - mL) * (w[i] - mw))) / mean(w.map((x) => (x - mw) ** 2));
  assert.ok(Math.abs(dev - (mL + eta * mw - eta)) < 1e-12);
  // Twice as many target rows halve the density ratio of every row.
  const halfW = w.map((x) => x / 2);
  const halfL = halfW.map((x, i) => x * losses[i]);
  const [hw, hL] = [mean(halfW), mean(halfL)];
  const hEta = -mean(halfL.map((x, i) => (x - hL) * (halfW[i] - hw))) / mean(halfW.map((x) => (x - hw) ** 2));
  assert.ok(Math.abs(deepEmbeddedValidation(losses, [-2, -1, 1, 2], 4, 8) - (hL + hEta * hw - hEta)) < 1e-12);
  assert.ok(Number.isFinite(deepEmbeddedValidation(losses, [1e4, -1e4, 0, 0], 4, 4)), 'extreme logits stay finite');
  assert.ok(Number.isNaN(deepEmbeddedValidation([], [], 0, 4)));
});
