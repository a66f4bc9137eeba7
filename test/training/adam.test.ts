import { rng } from '../helpers/gradcheck.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AdamStepper, sharedFloat32Array, type AdamTensor } from '../../src/training/adam.ts';
import { OneCycle } from '../../src/training/schedules.ts';
import type { GroupHyper } from '../../src/training/types.ts';
import { runPythonJson } from '../io/python.ts';

/** fastai's Adam callbacks (weight_decay, average_grad dampened, average_sqr_grad, step_stat, adam_step) on torch tensors. */
const FASTAI_ADAM = `
import json, sys, torch
d = json.load(sys.stdin)
T = d['tensors']
p0 = torch.tensor(d['p0'], dtype=torch.float32)
params = [p0[t['offset']:t['offset'] + t['size']].clone() for t in T]
state = [{} for _ in T]
def debias(mom, damp, step): return damp * (1 - mom ** step) / (1 - mom)
for s in d['steps']:
    if s['reset']: state = [{} for _ in T]
    grads = torch.tensor(s['grads'], dtype=torch.float32)
    for i, t in enumerate(T):
        if not s['trainable'][i]: continue          # requires_grad False: no .grad, Optimizer.step skips it
        h, p, st = s['hypers'][t['group']], params[i], state[i]
        g = grads[t['offset']:t['offset'] + t['size']]
        if t['decay'] and h['wd'] != 0: p.mul_(1 - h['lr'] * h['wd'])
        m = st.get('grad_avg', torch.zeros_like(p))
        m.mul_(h['mom']).add_(g, alpha=1 - h['mom'])
        v = st.get('sqr_avg', torch.zeros_like(p))
        v.mul_(h['sqrMom']).addcmul_(g, g, value=1 - h['sqrMom'])
        step = st.get('step', 0) + 1
        d1 = debias(h['mom'], 1 - h['mom'], step)
        d2 = debias(h['sqrMom'], 1 - h['sqrMom'], step)
        p.addcdiv_(m, (v / d2).sqrt() + h['eps'], value=-h['lr'] / d1)
        state[i] = {'grad_avg': m, 'sqr_avg': v, 'step': step}
n = len(d['p0'])
out = {'p': torch.zeros(n), 'm': torch.zeros(n), 'v': torch.zeros(n)}
for i, t in enumerate(T):
    sl = slice(t['offset'], t['offset'] + t['size'])
    out['p'][sl] = params[i]
    out['m'][sl] = state[i].get('grad_avg', torch.zeros(t['size']))
    out['v'][sl] = state[i].get('sqr_avg', torch.zeros(t['size']))
print(json.dumps({**{k: x.tolist() for k, x in out.items()}, 'steps': [st.get('step', 0) for st in state]}))
`;

interface Step {
  hypers: GroupHyper[];
  trainable: boolean[];
  grads: Float32Array;
  reset: boolean;
}

/**
 * Three groups (group 1 with wd 0), decay on and off, a zero-sized tensor, tensors frozen for some
 * steps (their step counts fall behind), tensors out of offset order, a state reset as at unfreeze,
 * and mom following a one-cycle schedule.
 */
function scenario(n = 1200, nSteps = 9) {
  const rand = rng(42);
  const tensors: AdamTensor[] = [
    { name: 'c', offset: 700, size: 500, group: 2, decay: true },
    { name: 'a', offset: 0, size: 5, group: 0, decay: true },
    { name: 'b', offset: 5, size: 64, group: 0, decay: false },
    { name: 'empty', offset: 69, size: 0, group: 0, decay: true },
    { name: 'd', offset: 69, size: 1, group: 1, decay: true },
    { name: 'e', offset: 70, size: 317, group: 1, decay: false },
    { name: 'f', offset: 387, size: 313, group: 1, decay: true },
  ];
  const p0 = Float32Array.from({ length: n }, () => rand() * 2 - 1);
  const sched = new OneCycle({ lrMax: [1e-3, 3e-3, 2e-2], nEpoch: 1, nIter: nSteps, pctStart: 0.3 });
  const steps: Step[] = [];
  for (let k = 0; k < nSteps; k++) {
    const hypers = sched.hypers(k);
    hypers[1].wd = 0;
    hypers[2].wd = 0.1;
    const grads = Float32Array.from({ length: n }, () => (rand() - 0.5) * 10 ** (rand() * 4 - 3));
    const trainable = tensors.map((t) => !(t.name === 'a' && k < 3) && !(t.name === 'e' && (k === 4 || k === 7)));
    steps.push({ hypers, trainable, grads, reset: k === 6 });
  }
  return { n, tensors, p0, steps };
}

async function runJs(s: ReturnType<typeof scenario>, workers: number) {
  const params = sharedFloat32Array(s.n);
  const grads = sharedFloat32Array(s.n);
  params.set(s.p0);
  const adam = new AdamStepper({ params, grads, tensors: s.tensors, workers });
  try {
    for (const st of s.steps) {
      if (st.reset) adam.resetState();
      grads.set(st.grads);
      await adam.step(st.hypers, st.trainable);
    }
    return { p: params, m: adam.expAvg, v: adam.expAvgSq, steps: [...adam.steps] };
  } finally {
    await adam.close();
  }
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

test('fastai Adam matches the PyTorch reference within 1e-6 relative', async (t) => {
  const s = scenario();
  const ref = runPythonJson<{ p: number[]; m: number[]; v: number[]; steps: number[] }>(FASTAI_ADAM, {
    tensors: s.tensors,
    p0: [...s.p0],
    steps: s.steps.map((st) => ({ ...st, grads: [...st.grads] })),
  });
  const js = await runJs(s, 0);
  assert.deepEqual(js.steps, ref.steps);
  assert.deepEqual(js.steps, [3, 3, 3, 3, 3, 2, 3]);
  // Relative error per tensor (max |Δ| over max |ref|): an element that cancels to near zero carries
  // float32 rounding of its larger intermediates, which an elementwise ratio would blow up.
  let exact = 0;
  for (const key of ['p', 'm', 'v'] as const) {
    for (const tensor of s.tensors) {
      let diff = 0;
      let scale = 0;
      for (let i = tensor.offset; i < tensor.offset + tensor.size; i++) {
        diff = Math.max(diff, Math.abs(js[key][i] - ref[key][i]));
        scale = Math.max(scale, Math.abs(ref[key][i]));
        if (js[key][i] === ref[key][i]) exact++;
      }
      assert.ok(diff <= 1e-6 * scale, `${key} of ${tensor.name}: relative error ${diff / scale}`);
    }
  }
  t.diagnostic(`${exact} of ${3 * s.n} values bit-identical to PyTorch`);
  // Frozen-then-trained and never-decayed parts actually moved; the zero-sized tensor is harmless.
  assert.notEqual(js.p[0], s.p0[0]);
});

test('the 2-worker path is bit-identical to the calling-thread path', async () => {
  const s = scenario();
  const one = await runJs(s, 0);
  for (const workers of [1, 2, 3]) {
    const many = await runJs(s, workers);
    assert.ok(bytes(one.p).equals(bytes(many.p)), `params differ with ${workers} workers`);
    assert.ok(bytes(one.m).equals(bytes(many.m)), `exp_avg differs with ${workers} workers`);
    assert.ok(bytes(one.v).equals(bytes(many.v)), `exp_avg_sq differs with ${workers} workers`);
    assert.deepEqual(one.steps, many.steps);
  }
});

test('state round-trips for checkpoints; resetState clears moments and step counts', async () => {
  const s = scenario(1200, 3);
  const params = sharedFloat32Array(s.n);
  const grads = sharedFloat32Array(s.n);
  params.set(s.p0);
  const adam = new AdamStepper({ params, grads, tensors: s.tensors, workers: 2 });
  try {
    grads.set(s.steps[0].grads);
    await adam.step(s.steps[0].hypers, s.steps[0].trainable);
    const saved = { expAvg: adam.expAvg.slice(), expAvgSq: adam.expAvgSq.slice(), steps: adam.steps.slice() };
    const savedParams = params.slice();
    await adam.step(s.steps[1].hypers, s.steps[1].trainable);
    const after = params.slice();

    params.set(savedParams);
    adam.resetState();
    s.tensors.forEach((t, k) => adam.loadTensorState(k, { expAvg: saved.expAvg.subarray(t.offset, t.offset + t.size), expAvgSq: saved.expAvgSq.subarray(t.offset, t.offset + t.size), step: saved.steps[k] }));
    await adam.step(s.steps[1].hypers, s.steps[1].trainable);
    assert.ok(bytes(params).equals(bytes(after)));

    adam.resetState();
    assert.ok(adam.expAvg.every((x) => x === 0) && adam.expAvgSq.every((x) => x === 0) && adam.steps.every((x) => x === 0));
    assert.throws(() => adam.loadTensorState(0, { expAvg: saved.expAvg, expAvgSq: saved.expAvgSq, step: 1 }), RangeError);
    assert.throws(() => adam.loadTensorState(s.tensors.length, { expAvg: new Float32Array(0), expAvgSq: new Float32Array(0), step: 1 }), RangeError);
  } finally {
    await adam.close();
  }
});

test('bad inputs are rejected with a message', async () => {
  const t: AdamTensor[] = [{ name: 'x', offset: 0, size: 4, group: 0, decay: true }];
  assert.throws(() => new AdamStepper({ params: new Float32Array(4), grads: new Float32Array(4), tensors: t }), /SharedArrayBuffer/);
  assert.throws(
    () => new AdamStepper({ params: new Float32Array(4), grads: new Float32Array(4), tensors: [{ ...t[0], size: 5 }], workers: 0 }),
    /outside/,
  );
  const adam = new AdamStepper({ params: new Float32Array(4), grads: new Float32Array(4), tensors: t, workers: 0 });
  await assert.rejects(adam.step([], [true]), /group 0/);
  await assert.rejects(adam.step([{ lr: 1, mom: 0.9, sqrMom: 0.99, wd: 0, eps: 1e-5 }], []), /mask/);
});
