/**
 * Times one fastai Adam step over the seed model's 25,760,068 parameters (122 tensors) on the calling
 * thread and with 1, 2 and 4 workers. Prints medians; asserts nothing.
 *   node --import tsx bench/adam.ts [repeats]
 */
import { availableParallelism } from 'node:os';
import { AdamStepper, sharedFloat32Array, type AdamTensor } from '../src/training/adam.ts';
import { OneCycle } from '../src/training/schedules.ts';

const N = 25_760_068;
const TENSORS = 122;
const repeats = Number(process.argv[2] ?? 15);

// 121 equal tensors plus the remainder, alternating decay flags, spread over 5 groups as the seed's are.
const size = Math.floor(N / TENSORS);
const tensors: AdamTensor[] = Array.from({ length: TENSORS }, (_, i) => ({
  name: `t${i}`,
  offset: i * size,
  size: i === TENSORS - 1 ? N - i * size : size,
  group: Math.min(4, Math.floor((i * 5) / TENSORS)),
  decay: i % 2 === 0,
}));
const params = sharedFloat32Array(N);
const grads = sharedFloat32Array(N);
for (let i = 0; i < N; i++) {
  params[i] = Math.sin(i) * 0.1;
  grads[i] = Math.cos(i * 0.7) * 1e-3;
}
const sched = new OneCycle({ lrMax: [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], nEpoch: 1, nIter: 1000 });
const all = tensors.map(() => true);

console.log(`fastai Adam step, ${N.toLocaleString('en')} params, ${TENSORS} tensors, ${availableParallelism()} CPUs, median of ${repeats}`);
for (const workers of [0, 1, 2, 4]) {
  const adam = new AdamStepper({ params, grads, tensors, workers });
  await adam.step(sched.hypers(0), all); // warm-up: worker start, JIT
  const times: number[] = [];
  for (let k = 1; k <= repeats; k++) {
    const t0 = performance.now();
    await adam.step(sched.hypers(k), all);
    times.push(performance.now() - t0);
  }
  await adam.close();
  times.sort((a, b) => a - b);
  const label = workers === 0 ? 'calling thread' : `${workers} worker${workers > 1 ? 's' : ''}`;
  console.log(`${label.padEnd(15)} median ${times[times.length >> 1].toFixed(1)} ms  (min ${times[0].toFixed(1)})`);
}
