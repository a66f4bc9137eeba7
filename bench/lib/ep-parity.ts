/**
 * Does one train step on a GPU provider compute what the CPU computes? Opens the same artifacts on
 * the CPU and on EP (same seed, so the same dropout masks), runs one train step on one random
 * batch, and compares the losses and every parameter's gradient
 * (relative error of the difference's norm), first with CPU fallback disabled (every node on EP),
 * else with ORT's placement. Prints one JSON line; exits 1 past the tolerance.
 *   node --import tsx bench/lib/ep-parity.ts EP [IMAGE_SIZE] [ARTIFACTS_ROOT] [--threads-cpu N]
 * With EP = cpu it compares 1 against N CPU threads: a check of this script on any machine.
 * onnxruntime-node has no device-resident tensors for CUDA (only WebGPU buffers), so every input
 * crosses to the device and every output back on each run; the JSON reports those bytes per step.
 */
import { type IoSpec, type Manifest } from '../../src/onnx/manifest.ts';
import { createRng } from '../../src/rng.ts';
import { dannTrainStep } from '../../src/training/dann-step.ts';
import { type ExecutionProvider, TrainingSession } from '../../src/training/session.ts';
import { artifactsFor } from '../train-step.ts';
import { syntheticBatch } from './batch.ts';

// float32 gradients of a deep network on two devices (different conv algorithms and summation
// orders, TF32 where the provider allows it) differ by ~1e-4..1e-3 of their norm; a wrong kernel
// or a node on the wrong data is off by O(1).
const TOLERANCE = 5e-3;

const args = process.argv.slice(2);
const threadsAt = args.indexOf('--threads-cpu');
const cpuThreads = threadsAt === -1 ? 2 : Number(args.splice(threadsAt, 2)[1]);
const [ep = 'cuda', size = '128', root = 'artifacts'] = args;
const dir = await artifactsFor(root, Number(size));

/** Megabytes a step moves host→device and back: the training graph's I/O, and the optimizer graph's once per trainable element (S). */
function transferMb(m: Manifest, count: number, nSource: number) {
  const sizes: Record<string, number> = { N: count, NS: nSource, S: m.parameters.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0) };
  const bytes = (specs: IoSpec<string>[]) => specs.reduce((n, io) => n + 4 * io.shape.reduce<number>((a, d) => a * (typeof d === 'number' ? d : sizes[d] ?? 1), 1), 0);
  const mb = (b: number) => Math.round(b / 1e5) / 10;
  const { training, optimizer } = m.models;
  return { train_in: mb(bytes(training.inputs)), train_out: mb(bytes(training.outputs)), optimizer_in: mb(bytes(optimizer.inputs)), optimizer_out: mb(bytes(optimizer.outputs)) };
}

async function oneStep(provider: ExecutionProvider, threads: number, disableCpuFallback = false) {
  const session = await TrainingSession.fromArtifacts(dir, { executionProvider: provider, threads, seed: 0, disableCpuFallback });
  const { imageSize, outputs } = session.manifest.config;
  const count = 8;
  const nSource = 4;
  const batch = syntheticBatch(createRng(0).fork('ep-parity'), { count, nSource, imageSize, outputs: outputs.length });
  const losses = await dannTrainStep(session, batch, { alpha: 0.5, lambdaDomain: 0.1 });
  const grads = new Map([...session.gradientViews()].map(([name, g]) => [name, g.slice()]));
  const transfer = transferMb(session.manifest, count, nSource);
  await session.release();
  return { losses, grads, transfer };
}

const reference = await oneStep('cpu', ep === 'cpu' ? 1 : cpuThreads);
// Every node on the provider if it can; otherwise say why, and compare with ORT's placement.
let strictError: string | undefined;
const other = await oneStep(ep as ExecutionProvider, cpuThreads, ep !== 'cpu').catch(async (e: Error) => {
  strictError = e.message.split('\n')[0];
  return oneStep(ep as ExecutionProvider, cpuThreads);
});
let worst = { name: '', error: -1 };
for (const [name, g] of reference.grads) {
  const h = other.grads.get(name)!;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < g.length; i++) {
    diff += (g[i] - h[i]) ** 2;
    norm += g[i] ** 2;
  }
  const error = Math.sqrt(diff) / Math.max(Math.sqrt(norm), 1e-30);
  if (!(error <= worst.error)) worst = { name, error };
}
const lossError = Math.abs(reference.losses.loss - other.losses.loss) / Math.abs(reference.losses.loss);
const pass = lossError <= TOLERANCE && worst.error <= TOLERANCE;
console.log(JSON.stringify({
  bench: 'ep-parity', ep, image_size: Number(size), artifacts: dir,
  loss_cpu: reference.losses.loss, loss_ep: other.losses.loss, loss_rel_error: lossError,
  worst_grad: worst.name, worst_grad_rel_error: worst.error, tolerance: TOLERANCE, pass,
  host_device_mb_per_step: other.transfer,
  all_nodes_on_ep: ep === 'cpu' || !strictError, ...(strictError ? { cpu_fallback_error: strictError } : {}),
}));
process.exitCode = pass ? 0 : 1;
