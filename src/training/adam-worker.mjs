// Runs adamKernel (or its SIMD form, when the buffers share a WebAssembly.Memory) from adam.ts on a
// slice of the shared buffers. Loader hooks registered in the parent thread (bin/ort-dann.js calls
// tsx's register()) do not reach workers, so this registers tsx itself.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { adamKernel, adamKernelSimd } = await import('./adam.ts');
const { instantiateSimdAdam } = await import('./adam-simd.ts');
const view = (d) => new Float32Array(d.buffer, d.byteOffset, d.length);
const [p, g, m, v] = [workerData.p, workerData.g, workerData.m, workerData.v].map(view);
const simd = workerData.memory ? instantiateSimdAdam(workerData.memory, workerData.module) : undefined;
parentPort.on('message', (work) => {
  parentPort.postMessage(simd ? adamKernelSimd(simd, p, g, m, v, work) : adamKernel(p, g, m, v, work));
});
