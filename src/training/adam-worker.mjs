// Runs adamKernel from adam.ts on a slice of the shared buffers. Loader hooks registered in the parent
// thread (bin/ort-dann.js calls tsx's register()) do not reach workers, so this registers tsx itself.
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { adamKernel } = await import('./adam.ts');
const view = (d) => new Float32Array(d.buffer, d.byteOffset, d.length);
const [p, g, m, v] = [workerData.p, workerData.g, workerData.m, workerData.v].map(view);
parentPort.on('message', (work) => {
  parentPort.postMessage(adamKernel(p, g, m, v, work));
});
