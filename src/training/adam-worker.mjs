// Runs adamKernel (or its SIMD form, when the buffers share a WebAssembly.Memory) from adam.ts on a
// slice of the shared buffers. Loader hooks registered in the parent thread (bin/ort-dann.js calls
// tsx's register()) do not reach workers, so this registers tsx itself.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

// First touch of this worker's share of the buffers, before anything else: fresh pages cost the
// first step dearly on VMs that back memory lazily (session.ts). A compare-and-swap of 0 for 0
// writes each page without changing a value the parent thread may already have stored there.
const [share, shares] = workerData.share;
for (const d of [workerData.p, workerData.g, workerData.m, workerData.v]) {
  const words = new Int32Array(d.buffer, d.byteOffset, d.length);
  const [from, to] = [Math.floor((words.length * share) / shares), Math.floor((words.length * (share + 1)) / shares)];
  for (let i = from; i < to; i += 1024) Atomics.compareExchange(words, i, 0, 0);
  if (to > from) Atomics.compareExchange(words, to - 1, 0, 0);
}

register();
const { adamKernel, adamKernelSimd } = await import('./adam.ts');
const { instantiateSimdAdam } = await import('./adam-simd.ts');
const view = (d) => new Float32Array(d.buffer, d.byteOffset, d.length);
const [p, g, m, v] = [workerData.p, workerData.g, workerData.m, workerData.v].map(view);
const simd = workerData.memory ? instantiateSimdAdam(workerData.memory, workerData.module) : undefined;
parentPort.on('message', (work) => {
  parentPort.postMessage(simd ? adamKernelSimd(simd, p, g, m, v, work) : adamKernel(p, g, m, v, work));
});
