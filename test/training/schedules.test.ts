import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OneCycle, combinedCos, dannAlpha, evenMults, fineTuneDannPlan, lrsFromSlice } from '../../src/training/schedules.ts';
import { runPythonJson } from '../io/python.ts';

const close = (actual: number, expected: number, rel = 1e-6, what = '') =>
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
/**
 * fastai's float32 phase position moves a value by up to ~1e-7 of the schedule's span, which is large
 * relative to the tiny lrs at the end of a cycle; compare against the peak instead.
 */
const closeToPeak = (actual: number, expected: number, peak: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= 1e-6 * peak, `${what}: ${actual} vs ${expected}`);

/** The per-phase formulas of docs/fastai-semantics.md §1, in float64, written independently of schedules.ts. */
function expected1cycle(lrMax: number, pos: number, pct: number, div: number, divFinal: number) {
  const ease = (t: number) => (1 - Math.cos(Math.PI * t)) / 2;
  if (pos < pct) {
    const t = pos / pct;
    return { lr: lrMax / div + (lrMax - lrMax / div) * ease(t), mom: 0.95 + (0.85 - 0.95) * ease(t) };
  }
  const t = (pos - pct) / (1 - pct);
  return { lr: lrMax + (lrMax / divFinal - lrMax) * ease(t), mom: 0.85 + (0.95 - 0.85) * ease(t) };
}

test('one-cycle lr and mom follow fastai per batch and per group', () => {
  for (const [pct, div] of [[0.25, 25], [0.99, 25], [0.3, 5]]) {
    const lrMax = [1e-5, 3e-4, 2e-3];
    const s = new OneCycle({ lrMax, nEpoch: 3, nIter: 7, pctStart: pct, div });
    assert.equal(s.totalSteps, 21);
    for (let k = 0; k < 21; k++) {
      const h = s.hypers(k);
      assert.equal(h.length, 3);
      lrMax.forEach((m, g) => {
        const e = expected1cycle(m, k / 21, pct, div, 1e5);
        closeToPeak(h[g].lr, e.lr, m, `pct ${pct} k ${k} group ${g} lr`);
        closeToPeak(h[g].mom, e.mom, 0.95, `pct ${pct} k ${k} mom`);
        assert.deepEqual([h[g].sqrMom, h[g].wd, h[g].eps], [0.99, 0.01, 1e-5]);
      });
    }
    // First batch: lr_max/div and mom 0.95; the last batch stays above lr_max/div_final.
    assert.equal(s.lrs(0)[2], 2e-3 / div);
    assert.equal(s.mom(0), 0.95);
    assert.ok(s.lrs(20)[2] > 2e-3 / 1e5);
  }
});

test('combined_cos reproduces fastai float32 phase positions (torch reference)', () => {
  const cases = [0.25, 0.99, 0.3, 0.1].flatMap((pct) => [7, 100, 313].map((n) => ({ pct, n })));
  const ref = runPythonJson<number[][]>(
    `
import json, math, sys, torch
# fastai combine_scheds/combined_cos semantics: boundaries in a float32 tensor, float64 cosine.
def cos_sched(a, b, pos): return a + (1 + math.cos(math.pi * (1 - pos))) * (b - a) / 2
def combined(pct, start, middle, end, pos):
    pcts = torch.cumsum(torch.tensor([0, pct, 1 - pct]), 0)
    idx = min(int((pos >= pcts).nonzero().max()), 1)
    local = ((pos - pcts[idx]) / (pcts[idx + 1] - pcts[idx])).item()
    return cos_sched(start, middle, local) if idx == 0 else cos_sched(middle, end, local)
print(json.dumps([[combined(c['pct'], 0.95, 0.85, 0.95, k / c['n']) for k in range(c['n'])] for c in json.load(sys.stdin)]))
`,
    cases,
  );
  cases.forEach(({ pct, n }, c) => {
    const f = combinedCos(pct, 0.95, 0.85, 0.95);
    for (let k = 0; k < n; k++) close(f(k / n), ref[c][k], 1e-14, `pct ${pct} n ${n} k ${k}`);
  });
});

test('discriminative learning rates from slices', () => {
  const near = (a: number[], b: number[]) => {
    assert.equal(a.length, b.length);
    a.forEach((x, i) => close(x, b[i], 1e-12, `index ${i}`));
  };
  near(lrsFromSlice(1e-5, 1e-3, 3), [1e-5, 1e-4, 1e-3]);
  near(lrsFromSlice(undefined, 1e-3, 3), [1e-4, 1e-4, 1e-3]);
  near(lrsFromSlice(0, 1e-3, 3), [1e-4, 1e-4, 1e-3]);
  near(lrsFromSlice(undefined, 1e-3, 1), [1e-3]);
  near(lrsFromSlice(1e-5, 1e-3, 1), [1e-3]);
  near(evenMults(1e-5, 1e-3, 5), [1e-5, 1e-5 * 10 ** 0.5, 1e-4, 1e-4 * 10 ** 0.5, 1e-3]);
  assert.throws(() => lrsFromSlice(1, 2, 0), RangeError);
});

test('DANN alpha is 2/(1+exp(-10p))-1 of the fraction of all planned iterations', () => {
  assert.equal(dannAlpha(0), 0);
  for (const p of [0.01, 0.1, 0.5, 0.9, 1]) close(dannAlpha(p), 2 / (1 + Math.exp(-10 * p)) - 1, 1e-15);
  close(dannAlpha(1), 0.9999092042625951, 1e-12);
});

test("fine_tune_dann plan: freeze_to(1) phase, then base_lr/2 unfrozen with slice(base_lr/lr_mult, base_lr)", () => {
  const plan = fineTuneDannPlan({ epochs: 3, freezeEpochs: 1, baseLr: 2e-3, lrMult: 100, nGroups: 5, nIter: 10 });
  assert.equal(plan.totalSteps, 40);
  const [frozen, unfrozen] = plan.phases;
  assert.deepEqual(
    [frozen.name, frozen.epochs, frozen.freezeTo, frozen.firstStep, frozen.steps, frozen.resetOptimizerState],
    ['frozen', 1, 1, 0, 10, true],
  );
  assert.deepEqual([frozen.schedule.pctStart, frozen.schedule.div, frozen.schedule.divFinal], [0.99, 25, 1e5]);
  assert.deepEqual(frozen.schedule.lrMax, [2e-4, 2e-4, 2e-4, 2e-4, 2e-3]);
  assert.deepEqual([unfrozen.name, unfrozen.epochs, unfrozen.freezeTo, unfrozen.firstStep, unfrozen.steps], ['unfrozen', 3, 0, 10, 30]);
  assert.deepEqual([unfrozen.schedule.pctStart, unfrozen.schedule.div], [0.3, 5]);
  const step = (1e-3 / 1e-5) ** (1 / 4);
  unfrozen.schedule.lrMax.forEach((lr, g) => close(lr, 1e-5 * step ** g, 1e-12, `group ${g}`));

  const first = plan.at(0);
  assert.deepEqual([first.phaseIndex, first.phaseStep, first.epoch, first.progress, first.alpha], [0, 0, 0, 0, 0]);
  close(first.hypers[4].lr, 2e-3 / 25, 1e-12);
  const second = plan.at(10);
  assert.deepEqual([second.phaseIndex, second.phaseStep, second.epoch, second.phaseEpoch], [1, 0, 1, 0]);
  close(second.hypers[4].lr, 1e-3 / 5, 1e-12);
  close(second.hypers[0].lr, 1e-5 / 5, 1e-12);
  assert.equal(second.hypers[0].mom, 0.95);
  close(second.alpha, dannAlpha(10 / 40), 1e-15);
  const last = plan.at(39);
  assert.deepEqual([last.phaseIndex, last.phaseStep, last.epoch, last.phaseEpoch], [1, 29, 3, 2]);
  close(last.progress, 39 / 40, 1e-15);
  for (let k = 0; k < 30; k++) {
    const e = expected1cycle(1e-3, k / 30, 0.3, 5, 1e5);
    closeToPeak(plan.at(10 + k).hypers[4].lr, e.lr, 1e-3, `unfrozen step ${k}`);
  }
  assert.throws(() => plan.at(40), RangeError);
  assert.throws(() => plan.at(-1), RangeError);
});

test('fine_tune_dann with no frozen epochs still halves base_lr, as fastai does', () => {
  const plan = fineTuneDannPlan({ epochs: 2, freezeEpochs: 0, baseLr: 4e-3, lrMult: 10, nGroups: 2, nIter: 5 });
  assert.equal(plan.phases.length, 1);
  assert.equal(plan.totalSteps, 10);
  assert.deepEqual(plan.phases[0].schedule.lrMax, [2e-4, 2e-3]);
  assert.equal(plan.at(0).phase.name, 'unfrozen');
});
