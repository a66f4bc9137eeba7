/**
 * Our side of the train-step bench, run in a child process (see child.ts): the full step the
 * training loop takes — runTrainStep (forward, losses, backward; alpha and dropout masks drawn
 * inside), runOptimizerStep (fastai Adam over every group), lazyResetGrad — on a fixed random batch.
 *   bench/index.ts __train-step-ours --dir ARTIFACTS --count 32 --n-source 16 --steps 5 --warmup 2
 *     --threads 2 --ep cpu [--lambda-domain 0.1] [--lr 1e-4] [--session-config KEY=VALUE]... [--execution-mode parallel]
 * --session-config and --execution-mode override ORT's session options for a comparison (the bench
 * wraps InferenceSession.create; the product's options are session.ts's).
 */
import * as ort from 'onnxruntime-node';
import { createRng } from '../../src/rng.ts';
import { dannTrainStep } from '../../src/training/dann-step.ts';
import { dannAlpha } from '../../src/training/schedules.ts';
import { type ExecutionProvider, TrainingSession } from '../../src/training/session.ts';
import { parseArgs } from './args.ts';
import { otherCoresWindow } from './busy.ts';
import { emit } from './child.ts';
import { syntheticBatch } from './batch.ts';

const OURS_ARGS = {
  dir: { type: 'string', default: '', help: 'artifacts directory' },
  count: { type: 'int', default: 32, min: 1, help: 'rows per batch' },
  nSource: { type: 'int', default: 16, min: 0, help: 'source rows' },
  steps: { type: 'int', default: 5, min: 1, help: 'timed steps' },
  warmup: { type: 'int', default: 2, min: 0, help: 'untimed steps' },
  threads: { type: 'int', default: 2, min: 1, help: 'intra-op threads' },
  ep: { type: 'string', default: 'cpu', choices: ['cpu', 'cuda', 'webgpu'], help: 'execution provider' },
  lambdaDomain: { type: 'number', default: 0.1, help: 'domain loss weight' },
  lr: { type: 'number', default: 1e-4, help: 'learning rate' },
  sessionConfig: { type: 'repeated', help: 'KEY=VALUE session config entry' },
  executionMode: { type: 'string', default: '', choices: ['', 'sequential', 'parallel'], help: 'ORT execution mode' },
  sessionOption: { type: 'repeated', help: 'KEY=JSON top-level session option, e.g. enableCpuMemArena=false' },
} as const;

/** Merges the comparison's overrides into every session the TrainingSession opens. */
function overrideSessionOptions(entries: string[], executionMode: string, options: string[]): void {
  if (entries.length === 0 && !executionMode && options.length === 0) return;
  const top = Object.fromEntries(options.map((kv) => [kv.slice(0, kv.indexOf('=')), JSON.parse(kv.slice(kv.indexOf('=') + 1))]));
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (file: string, o?: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession>;
  (ort.InferenceSession as { create: unknown }).create = (file: string, o: ort.InferenceSession.SessionOptions = {}) => {
    // onnxruntime-node flattens `extra` into dotted config keys: {session: {'a.b': v}} is session.a.b.
    const extra = structuredClone((o.extra ?? {}) as Record<string, Record<string, string>>);
    for (const kv of entries) {
      const [key, value] = [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)];
      const dot = key.indexOf('.');
      (extra[key.slice(0, dot)] ??= {})[key.slice(dot + 1)] = value;
    }
    return create(file, { ...o, ...top, ...(executionMode ? { executionMode: executionMode as 'parallel' | 'sequential' } : {}), extra });
  };
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
  const { dir, ep, count, nSource, steps, warmup, threads, lambdaDomain, lr, sessionConfig, executionMode, sessionOption } = parseArgs('__train-step-ours', argv, OURS_ARGS);
  overrideSessionOptions(sessionConfig, executionMode, sessionOption);

  const t0 = performance.now();
  const session = await TrainingSession.fromArtifacts(dir, { executionProvider: ep as ExecutionProvider, threads });
  const createS = (performance.now() - t0) / 1000;
  const { imageSize, outputs } = session.manifest.config;
  const batch = syntheticBatch(createRng(0).fork('bench'), { count, nSource, imageSize, outputs: outputs.length });
  const hypers = session.hypersFor(lr);

  const total = warmup + steps;
  const train: number[] = [];
  const optimizer: number[] = [];
  const step: number[] = [];
  const stepCpu: number[] = [];
  let otherCores: (() => number | null) | undefined;
  for (let k = 0; k < total; k++) {
    if (k === warmup) otherCores = otherCoresWindow();
    // CPU seconds of all this process's threads (ORT's pool, Adam's workers): little affected by other work's load.
    const cpu = process.cpuUsage();
    const a = performance.now();
    await dannTrainStep(session, batch, { alpha: dannAlpha(k / total), lambdaDomain });
    const b = performance.now();
    await session.runOptimizerStep(hypers);
    session.lazyResetGrad();
    const c = performance.now();
    if (k === 0) emit({ event: 'first_step' });
    if (k >= warmup) {
      train.push((b - a) / 1000);
      optimizer.push((c - b) / 1000);
      step.push((c - a) / 1000);
      const used = process.cpuUsage(cpu);
      stepCpu.push((used.user + used.system) / 1e6);
    }
  }
  const other = otherCores?.() ?? null;
  await session.release();
  emit({
    event: 'result',
    step_s: step, train_s: train, optimizer_s: optimizer, step_cpu_s: stepCpu,
    // maxRSS is the process's high-water mark (VmHWM) in KiB.
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
    create_s: createS,
    other_cores: other,
    runtime: `onnxruntime-node ${ort.env.versions.node} ${ep}`,
  });
}
