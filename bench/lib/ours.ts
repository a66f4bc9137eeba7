/**
 * Our side of the train-step bench, run in a child process (see child.ts): the full step the
 * training loop takes — runTrainStep (forward, losses, backward; alpha and dropout masks drawn
 * inside), runOptimizerStep (fastai Adam over every group), lazyResetGrad — on a fixed random batch.
 *   bench/index.ts __train-step-ours --dir ARTIFACTS --count 32 --n-source 16 --steps 5 --warmup 2
 *     --threads 2 --ep cpu [--lambda-domain 0.1] [--lr 1e-4]
 */
import * as ort from 'onnxruntime-node';
import { createRng } from '../../src/rng.ts';
import { dannTrainStep } from '../../src/training/dann-step.ts';
import { dannAlpha } from '../../src/training/schedules.ts';
import { type ExecutionProvider, TrainingSession } from '../../src/training/session.ts';
import { emit } from './child.ts';

function option(argv: string[], name: string, fallback?: string): string {
  const i = argv.indexOf(name);
  const v = i === -1 ? fallback : argv[i + 1];
  if (v === undefined) throw new Error(`internal: ${name} missing`);
  return v;
}

/** Runs the bench; a failure is reported as one protocol line (the parent puts it in the row). */
export async function oursTrainStep(argv: string[]): Promise<void> {
  try {
    await run(argv);
  } catch (e) {
    console.error(e);
    emit({ event: 'error', message: ((e as Error).message ?? String(e)).split('\n')[0] });
    process.exitCode = 1;
  }
}

async function run(argv: string[]): Promise<void> {
  const num = (name: string, fallback?: number) => Number(option(argv, name, fallback === undefined ? undefined : String(fallback)));
  const dir = option(argv, '--dir');
  const ep = option(argv, '--ep', 'cpu') as ExecutionProvider;
  const count = num('--count');
  const nSource = num('--n-source');
  const steps = num('--steps');
  const warmup = num('--warmup');
  const lambdaDomain = num('--lambda-domain', 0.1);
  const lr = num('--lr', 1e-4);

  const t0 = performance.now();
  const session = await TrainingSession.fromArtifacts(dir, { executionProvider: ep, threads: num('--threads') });
  const createS = (performance.now() - t0) / 1000;
  const { imageSize, outputs } = session.manifest.config;
  const rng = createRng(0).fork('bench');
  const images = new Float32Array(count * 3 * imageSize * imageSize).map(() => rng.normal());
  const labels = new Float32Array(nSource * outputs.length).map(() => rng.normal());
  const hypers = session.hypersFor(lr);

  const total = warmup + steps;
  const train: number[] = [];
  const optimizer: number[] = [];
  const step: number[] = [];
  for (let k = 0; k < total; k++) {
    const a = performance.now();
    await dannTrainStep(session, { images, count, nSource, labels }, { alpha: dannAlpha(k / total), lambdaDomain });
    const b = performance.now();
    await session.runOptimizerStep(hypers);
    session.lazyResetGrad();
    const c = performance.now();
    if (k === 0) emit({ event: 'first_step' });
    if (k >= warmup) {
      train.push((b - a) / 1000);
      optimizer.push((c - b) / 1000);
      step.push((c - a) / 1000);
    }
  }
  await session.release();
  emit({
    event: 'result',
    step_s: step, train_s: train, optimizer_s: optimizer,
    // maxRSS is the process's high-water mark (VmHWM) in KiB.
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    create_s: createS,
    runtime: `onnxruntime-node ${ort.env.versions.node} ${ep}`,
  });
}
