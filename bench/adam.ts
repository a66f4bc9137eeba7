/**
 * Times one fastai Adam step over the seed model's 25,760,068 parameters (122 tensors): the scalar
 * kernel (plain SharedArrayBuffers) against the SIMD kernel (adamBuffers), on the calling thread and
 * on 2 workers. The variants take turns, one step each per round, so load from other work hits them
 * alike. Prints medians of wall and CPU time (all threads: load from other work barely moves it); asserts nothing (test/training/adam-simd.test.ts checks they agree bit for bit).
 *   npm run bench -- adam [--repeats 15]
 */
import { availableParallelism, loadavg } from 'node:os';
import { AdamStepper, adamBuffers, sharedFloat32Array, type AdamTensor } from '../src/training/adam.ts';
import { OneCycle } from '../src/training/schedules.ts';
import { type ArgSpec, parseArgs } from './lib/args.ts';

const N = 25_760_068;
const TENSORS = 122;

export const ADAM_ARGS = { repeats: { type: 'int', default: 15, min: 1, help: 'timed steps per variant' } } satisfies ArgSpec;

export async function benchAdam(argv: string[]): Promise<void> {
  const { repeats } = parseArgs('adam', argv, ADAM_ARGS);
  // 121 equal tensors plus the remainder, alternating decay flags, spread over 5 groups as the seed's are.
  const size = Math.floor(N / TENSORS);
  const tensors: AdamTensor[] = Array.from({ length: TENSORS }, (_, i) => ({
    name: `t${i}`, offset: i * size, size: i === TENSORS - 1 ? N - i * size : size,
    group: Math.min(4, Math.floor((i * 5) / TENSORS)), decay: i % 2 === 0,
  }));
  const sched = new OneCycle({ lrMax: [1e-5, 3e-5, 1e-4, 3e-4, 1e-3], nEpoch: 1, nIter: 1000 });
  const all = tensors.map(() => true);
  const variants = [0, 2].flatMap((workers) => (['scalar', 'simd'] as const).map((kernel) => {
    const { params, grads } = kernel === 'simd' ? adamBuffers(N) : { params: sharedFloat32Array(N), grads: sharedFloat32Array(N) };
    for (let i = 0; i < N; i++) {
      params[i] = Math.sin(i) * 0.1;
      grads[i] = Math.cos(i * 0.7) * 1e-3;
    }
    const label = `${kernel} kernel, ${workers === 0 ? 'calling thread' : `${workers} workers`}`;
    return { label, adam: new AdamStepper({ params, grads, tensors, workers }), times: [] as number[], cpu: [] as number[] };
  }));
  console.log(`fastai Adam step, ${N.toLocaleString('en')} params, ${TENSORS} tensors, ${availableParallelism()} CPUs, median of ${repeats}, load average ${loadavg()[0].toFixed(2)}`);
  for (const v of variants) await v.adam.step(sched.hypers(0), all); // warm-up: worker start, JIT
  for (let k = 1; k <= repeats; k++) {
    for (const v of variants) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await v.adam.step(sched.hypers(k), all);
      v.times.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      v.cpu.push((c.user + c.system) / 1000);
    }
  }
  for (const v of variants) {
    await v.adam.close();
    const t = v.times.sort((a, b) => a - b);
    const cpu = v.cpu.sort((a, b) => a - b);
    console.log(`${v.label.padEnd(32)} median ${t[t.length >> 1].toFixed(1)} ms  (min ${t[0].toFixed(1)})  CPU ${cpu[cpu.length >> 1].toFixed(1)} ms (all threads)`);
  }
  console.log(`load average after: ${loadavg()[0].toFixed(2)}`);
}
