/**
 * TrainingSession: the surface of ONNX Runtime's training API (create, runTrainStep,
 * runOptimizerStep, lazyResetGrad, runEvalStep, getParametersSize, getContiguousParameters,
 * loadParametersBuffer, release) over ordinary InferenceSessions running the compiled artifacts,
 * plus what that API lacked: per-group hyper-parameters, freeze/unfreeze, checkpoints. It knows no
 * model: steps take and return tensors keyed by the manifest's roles (dann-step.ts builds DANN's).
 *
 * Parameters live in one contiguous Float32Array (manifest order) on shared memory, so the optimizer
 * workers update them in place. onnxruntime-node refuses SharedArrayBuffer inputs, so the graphs read
 * a plain mirror, refreshed with one memcpy after the parameters change; graph inputs are views into it.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { UserError } from '../errors.ts';
import { writeDirAtomic } from '../io/atomic.ts';
import { cudaProviderInstalled, missingCudaLibraries } from '../io/cuda-provider.ts';
import { encodeSafetensors, readSafetensors, type SafetensorsContent } from '../io/safetensors.ts';
import { type Tensor, toFloat32 } from '../io/tensor.ts';
import { type InputRole, type Manifest, type ModelSpec, type OutputRole, readManifest } from '../onnx/manifest.ts';
import { createRng, type Rng } from '../rng.ts';
import { AdamStepper, type AdamTensor, adamBuffers } from './adam.ts';
import { trainableMask } from './param-groups.ts';
import { ADAM_DEFAULTS, DEFAULT_MOMS } from './schedules.ts';
import type { GroupHyper } from './types.ts';

export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';

export interface SessionOptions {
  executionProvider?: ExecutionProvider;
  /** Intra-op threads (default: all cores). */
  threads?: number;
  /** 'js': TypedArray Adam on worker threads; 'onnx': optimizer_model.onnx; 'auto': js on CPU, onnx elsewhere. */
  optimizer?: 'js' | 'onnx' | 'auto';
  /** Seed of the dropout-mask stream. */
  seed?: number;
  /** Worker threads of the JS optimizer (default 2; 0 = calling thread). */
  adamWorkers?: number;
  /** Fail instead of running nodes the provider lacks on the CPU (ORT's session.disable_cpu_ep_fallback). */
  disableCpuFallback?: boolean;
}

export interface CheckpointPaths {
  /** Artifacts directory holding manifest.json, or an explicit manifest. */
  artifacts: string;
  /** Model state_dict safetensors; default the artifacts' initial checkpoint. */
  checkpointState?: string;
  trainModel?: string;
  evalModel?: string;
  optimizerModel?: string;
}

/**
 * A step's inputs keyed by manifest role (image, label, n_source, alpha, lambda_domain…); the session
 * adds parameters and buffers, and dropout masks unless given. Which graph input a role feeds is the
 * manifest's business, so callers never name graph inputs.
 */
export type StepFeeds = Partial<Record<InputRole, ort.Tensor>>;

/** A step's outputs keyed by manifest role (loss, prediction…); gradients and buffer updates stay in the session. */
export type StepOutputs = Partial<Record<OutputRole, Float32Array>>;

/** Trainer counters stored beside the weights in a checkpoint. */
export type TrainerState = Record<string, unknown>;

const CUDA_INSTALL_HINT = 'install it with `npx ort-dann install-cuda` (or `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` on a machine that reaches NuGet), or use --ep cpu';

function sessionOptions(ep: ExecutionProvider, threads: number | undefined, disableCpuFallback = false): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ep === 'cpu' ? ['cpu'] : [ep, 'cpu'],
    ...(threads === undefined ? {} : { intraOpNumThreads: threads }),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // The memory pattern allocates one block for the whole plan on top of the arena's chunks: off, the
    // train step's peak RSS fell from 1.80 to 1.36 GB at 128 px, CPU time no higher (bench/README.md).
    enableMemPattern: false,
    // Several sessions take turns; spinning idle pool threads would steal the cores (measured 3× slower).
    extra: { session: { 'intra_op.allow_spinning': '0', ...(disableCpuFallback ? { disable_cpu_ep_fallback: '1' } : {}) } },
  } as ort.InferenceSession.SessionOptions;
}

/** Why `--ep cuda` did not start: no provider files, or their CUDA libraries or GPU are missing. */
function cudaStartError(message: string): UserError {
  if (!cudaProviderInstalled()) return new UserError(`--ep cuda: the CUDA execution provider is not installed in onnxruntime-node; ${CUDA_INSTALL_HINT}`);
  const missing = missingCudaLibraries();
  const why = missing.length ? `the loader does not find ${missing.join(', ')}; put the folder holding the CUDA 13 libraries on LD_LIBRARY_PATH` : `${message.split('\n')[0]}; check the NVIDIA driver and GPU (nvidia-smi)`;
  return new UserError(`--ep cuda: the CUDA provider is installed but does not start: ${why}, or use --ep cpu`);
}

async function openSession(file: string, ep: ExecutionProvider, threads: number | undefined, disableCpuFallback?: boolean): Promise<ort.InferenceSession> {
  // The hint names the folder: a bare `build-artifacts` would write the default folder, not this one.
  const rebuild = `rebuild the artifacts with \`ort-dann build-artifacts --out ${dirname(file)}\``;
  if (!existsSync(file)) throw new UserError(`${file} is missing; ${rebuild}`);
  try {
    return await ort.InferenceSession.create(file, sessionOptions(ep, threads, disableCpuFallback));
  } catch (e) {
    const message = (e as Error).message ?? String(e);
    if (ep === 'cuda' && /cuda|provider|libonnxruntime_providers/i.test(message)) throw cudaStartError(message);
    if (ep !== 'cpu' && /backend|provider|not (found|supported|available)/i.test(message)) throw new UserError(`--ep ${ep}: this onnxruntime-node build cannot use ${ep} (${message.split('\n')[0]}); use --ep cpu`);
    throw new UserError(`${file} cannot be loaded by ONNX Runtime (${message.split('\n')[0]}); ${rebuild}`);
  }
}

function feedTensor(feeds: StepFeeds, role: InputRole, input: string): ort.Tensor {
  const t = feeds[role];
  if (!t) throw new Error(`internal: no ${role} feed for graph input ${input}`);
  return t;
}

function feedValue(feeds: StepFeeds, role: InputRole, input: string): number | bigint {
  return feedTensor(feeds, role, input).data[0] as number | bigint;
}

/** A checkpoint as read from disk: the state dict, and the optimizer state when the checkpoint is a directory holding one. */
interface CheckpointContent {
  modelFile: string;
  model: SafetensorsContent;
  optimizerFile?: string;
  optimizer?: SafetensorsContent;
}

/** A checkpoint directory (model.safetensors, optionally optimizer.safetensors) or a bare state-dict file. */
async function readCheckpoint(path: string): Promise<CheckpointContent> {
  const dir = existsSync(join(path, 'model.safetensors')) ? path : undefined;
  const modelFile = dir ? join(dir, 'model.safetensors') : path;
  if (!existsSync(modelFile)) throw new UserError(`${modelFile} does not exist; give a checkpoint directory or a .safetensors state dict`);
  const optimizerFile = dir && existsSync(join(dir, 'optimizer.safetensors')) ? join(dir, 'optimizer.safetensors') : undefined;
  const [model, optimizer] = await Promise.all([readSafetensors(modelFile), optimizerFile ? readSafetensors(optimizerFile) : undefined]);
  return { modelFile, model, optimizerFile, optimizer };
}

/** The parameters, their gradients, the plain-memory mirror ORT reads, and the optimizer over them. */
interface ParameterState {
  tensors: AdamTensor[];
  parameters: Float32Array;
  gradients: Float32Array;
  mirror: Float32Array;
  adam: AdamStepper;
}

function allocateParameters(manifest: Manifest, adamWorkers: number): ParameterState {
  let offset = 0;
  const tensors = manifest.parameters.map((p) => {
    const size = p.shape.reduce((a, b) => a * b, 1);
    const t = { name: p.name, offset, size, group: p.group, decay: p.decay };
    offset += size;
    return t;
  });
  const { params: parameters, grads: gradients } = adamBuffers(offset);
  const adam = new AdamStepper({ params: parameters, grads: gradients, tensors, workers: adamWorkers });
  return { tensors, parameters, gradients, mirror: new Float32Array(offset), adam };
}

export class TrainingSession {
  readonly manifest: Manifest;
  /** All parameters, back to back in manifest order (shared memory for the optimizer workers). */
  readonly parameters: Float32Array;
  readonly gradients: Float32Array;
  /** BatchNorm running statistics and counters, by state_dict name. */
  readonly buffers = new Map<string, Float32Array>();
  readonly counters = new Map<string, bigint>();
  readonly tensors: AdamTensor[];
  /** Position of each parameter in `tensors`, by name. */
  private readonly tensorIndex: Map<string, number>;
  private trainable: boolean[];
  private accumulate = false;
  private readonly adam: AdamStepper;
  /** Plain-memory copy of `parameters` that ORT reads; refreshed when `mirrorStale`. */
  private readonly mirror: Float32Array;
  private mirrorStale = true;
  private readonly views = new Map<string, Float32Array>();
  private readonly feedViews = new Map<string, Float32Array>();
  private maskStream: Rng;
  /** Extra `__metadata__` of every saved model.safetensors (e.g. the run's preprocessing, for re-export). */
  checkpointMetadata: Record<string, string> = {};
  /**
   * The trainer state saved with the checkpoint the session was created from (`checkpointState`), so a
   * resumed run reads its checkpoint once; undefined when that checkpoint holds no optimizer state.
   */
  trainerState?: TrainerState;
  private trainStep = 0;

  private constructor(
    manifest: Manifest,
    state: ParameterState,
    private readonly train: ort.InferenceSession,
    private readonly evaluate: ort.InferenceSession,
    private readonly optimizerGraph: ort.InferenceSession | undefined,
    private readonly useOnnxOptimizer: boolean,
    options: SessionOptions,
  ) {
    this.manifest = manifest;
    ({ tensors: this.tensors, parameters: this.parameters, gradients: this.gradients, mirror: this.mirror, adam: this.adam } = state);
    this.tensorIndex = new Map(this.tensors.map((t, k) => [t.name, k]));
    for (const t of this.tensors) {
      this.views.set(t.name, this.parameters.subarray(t.offset, t.offset + t.size));
      this.feedViews.set(t.name, this.mirror.subarray(t.offset, t.offset + t.size));
    }
    this.trainable = manifest.parameters.map(() => true);
    this.maskStream = createRng(options.seed ?? 0).fork('dropout');
  }

  /** ORT's `TrainingSession.create`, with the artifacts' manifest naming every input and output. */
  static async create(paths: CheckpointPaths, options: SessionOptions = {}): Promise<TrainingSession> {
    const manifest = readManifest(paths.artifacts);
    const ep = options.executionProvider ?? 'cpu';
    if (ep !== 'cpu' && manifest.batchNormForward !== 'ops') {
      const fresh = `${paths.artifacts.replace(/\/+$/, '')}-new`;
      throw new UserError(`--ep ${ep}: ${paths.artifacts} come from an earlier ort-dann whose BatchNorm uses ONNX's training kernel, which the ${ep === 'cuda' ? 'CUDA' : 'WebGPU'} provider does not run; build new artifacts with \`npx ort-dann build-artifacts --out ${fresh}\` and pass --artifacts ${fresh}`);
    }
    const file = (spec: ModelSpec, override?: string) => override ?? join(paths.artifacts, spec.file);
    const useOnnx = options.optimizer === 'onnx' || (options.optimizer !== 'js' && ep !== 'cpu');
    // ORT builds the sessions on this thread for a second or more. Meanwhile libuv's pool reads the
    // checkpoint and the Adam workers touch the shared buffers: first touch of fresh pages is what
    // the first step would otherwise pay (2.8 ms per MB on the VM of bench/README.md).
    const reading = readCheckpoint(paths.checkpointState ?? join(paths.artifacts, manifest.checkpoint));
    reading.catch(() => undefined);
    const state = allocateParameters(manifest, useOnnx ? 0 : options.adamWorkers ?? 2);
    const opened: ort.InferenceSession[] = [];
    const open = async (spec: ModelSpec, override?: string) => {
      const session = await openSession(file(spec, override), ep, options.threads, options.disableCpuFallback);
      opened.push(session);
      return session;
    };
    try {
      const train = await open(manifest.models.training, paths.trainModel);
      const evaluate = await open(manifest.models.eval, paths.evalModel);
      const optimizer = useOnnx ? await open(manifest.models.optimizer, paths.optimizerModel) : undefined;
      const session = new TrainingSession(manifest, state, train, evaluate, optimizer, useOnnx, options);
      session.trainerState = session.applyCheckpoint(await reading);
      return session;
    } catch (e) {
      // A caller that goes on (a sweep agent, a test) must not keep the workers and sessions of a failed start.
      await Promise.all([state.adam.close(), ...opened.map((s) => s.release())]);
      throw e;
    }
  }

  static fromArtifacts(dir: string, options: SessionOptions = {}): Promise<TrainingSession> {
    return TrainingSession.create({ artifacts: dir }, options);
  }

  get groupCount(): number {
    return this.manifest.groups.length;
  }

  getParametersSize(trainableOnly = false): number {
    return this.tensors.reduce((n, t, k) => n + (!trainableOnly || this.trainable[k] ? t.size : 0), 0);
  }

  /** The live contiguous parameter buffer (a view, not a copy). */
  getContiguousParameters(): Float32Array {
    return this.parameters;
  }

  loadParametersBuffer(buffer: Float32Array): void {
    if (buffer.length !== this.parameters.length) throw new UserError(`parameter buffer has ${buffer.length} values; this model has ${this.parameters.length}`);
    this.parameters.set(buffer);
    this.mirrorStale = true;
  }

  /** Named views into the parameter buffer (for histograms and export). */
  parameterViews(): Map<string, Float32Array> {
    return this.views;
  }

  gradientViews(): Map<string, Float32Array> {
    return new Map(this.tensors.map((t) => [t.name, this.gradients.subarray(t.offset, t.offset + t.size)]));
  }

  /** fastai `freeze_to(n)`: groups before n frozen except BatchNorm parameters (train_bn). */
  freezeTo(n: number): void {
    this.trainable = trainableMask(this.manifest.parameters, n, this.groupCount, true);
  }

  unfreeze(): void {
    this.freezeTo(0);
  }

  isTrainable(name: string): boolean {
    return this.trainable[this.tensorIndex.get(name)!];
  }

  resetOptimizerState(): void {
    this.adam.resetState();
  }

  /** Constant hyper-parameters for every group (fastai's defaults with this lr), for simple loops and benches. */
  hypersFor(lr: number | number[]): GroupHyper[] {
    return this.manifest.groups.map((_, g) => ({
      lr: Array.isArray(lr) ? lr[g] : lr, mom: DEFAULT_MOMS[0], sqrMom: ADAM_DEFAULTS.sqrMom, eps: ADAM_DEFAULTS.eps, wd: ADAM_DEFAULTS.wd,
    }));
  }

  private modelFeeds(spec: ModelSpec): Record<string, ort.Tensor> {
    if (this.mirrorStale) {
      this.mirror.set(this.parameters);
      this.mirrorStale = false;
    }
    const feeds: Record<string, ort.Tensor> = {};
    for (const input of spec.inputs) {
      if (input.role === 'param') feeds[input.name] = new ort.Tensor('float32', this.feedViews.get(input.name)!, input.shape as number[]);
      else if (input.role === 'buffer') feeds[input.name] = new ort.Tensor('float32', this.buffers.get(input.name)!, input.shape as number[]);
    }
    return feeds;
  }

  /** The graph's feeds: the caller's by role, then parameters and buffers, and dropout masks when it has them. */
  private roleFeeds(spec: ModelSpec, given: StepFeeds, masks?: Record<string, Float32Array>): Record<string, ort.Tensor> {
    const feeds = this.modelFeeds(spec);
    const stream = this.maskStream.at(this.trainStep);
    for (const input of spec.inputs) {
      if (input.role === 'param' || input.role === 'buffer') continue;
      if (input.role === 'dropout_mask') {
        // A mask covers the source rows (n_source) or every row of the batch.
        const rows = input.dropout!.rows === 'source' ? Number(feedValue(given, 'n_source', input.name)) : feedTensor(given, 'image', input.name).dims[0];
        const width = input.shape[1] as number;
        let mask = masks?.[input.name];
        if (!mask) {
          mask = new Float32Array(rows * width);
          const threshold = Math.floor(input.dropout!.p * 4294967296);
          const draw = stream.fork(input.name);
          for (let k = 0; k < mask.length; k++) mask[k] = draw.uint32() < threshold ? 0 : 1;
        }
        feeds[input.name] = new ort.Tensor('float32', mask, [rows, width]);
        continue;
      }
      feeds[input.name] = feedTensor(given, input.role, input.name);
    }
    return feeds;
  }

  /** Non-gradient outputs by role. */
  private static byRole(spec: ModelSpec, out: ort.InferenceSession.OnnxValueMapType): StepOutputs {
    const result: StepOutputs = {};
    for (const o of spec.outputs) if (o.role !== 'grad' && o.role !== 'buffer_update') result[o.role] = out[o.name].data as Float32Array;
    return result;
  }

  /**
   * Forward, losses and backward; gradients land in `gradients` (accumulated until lazyResetGrad),
   * BatchNorm statistics are updated. `dropoutMasks` (by input name) replace the session's seeded draw.
   */
  async runTrainStep(feeds: StepFeeds, dropoutMasks?: Record<string, Float32Array>): Promise<StepOutputs> {
    const spec = this.manifest.models.training;
    const out = await this.train.run(this.roleFeeds(spec, feeds, dropoutMasks));
    const accumulate = this.accumulate;
    for (const o of spec.outputs) {
      if (o.role === 'grad') {
        const t = this.tensors[this.tensorIndex.get(o.of!)!];
        const g = out[o.name].data as Float32Array;
        const dest = this.gradients.subarray(t.offset, t.offset + t.size);
        if (accumulate) for (let k = 0; k < g.length; k++) dest[k] += g[k];
        else dest.set(g);
      } else if (o.role === 'buffer_update') {
        this.buffers.get(o.of!)!.set(out[o.name].data as Float32Array);
      }
    }
    for (const [name, n] of this.counters) this.counters.set(name, n + 1n);
    this.accumulate = true;
    this.trainStep++;
    return TrainingSession.byRole(spec, out);
  }

  /** ORT's lazyResetGrad: the next train step overwrites the gradients instead of adding to them. */
  lazyResetGrad(): void {
    this.accumulate = false;
  }

  /**
   * One fastai Adam step of the trainable parameters with per-group hyper-parameters. Resolves to
   * whether every updated parameter is still finite (the step touches each one anyway).
   */
  async runOptimizerStep(hypers: readonly GroupHyper[]): Promise<boolean> {
    if (hypers.length !== this.groupCount) throw new Error(`internal: ${hypers.length} hyper sets for ${this.groupCount} groups`);
    this.mirrorStale = true;
    if (!this.useOnnxOptimizer) return this.adam.step(hypers, this.trainable);
    let check = 0;
    // The ONNX path runs optimizer_model.onnx per tensor (state shared with the JS path's buffers).
    const scalar = (v: number) => new ort.Tensor('float32', Float32Array.from([v]), []);
    const { expAvg, expAvgSq, steps } = this.adam;
    for (let k = 0; k < this.tensors.length; k++) {
      if (!this.trainable[k]) continue;
      const t = this.tensors[k];
      const h = hypers[t.group];
      steps[k] += 1;
      // Inputs must not live on shared memory: slice() copies the tensor's range into plain memory.
      const range = (a: Float32Array) => new ort.Tensor('float32', a.slice(t.offset, t.offset + t.size), [t.size]);
      const out = await this.optimizerGraph!.run({
        param: range(this.parameters), grad: range(this.gradients), exp_avg: range(expAvg), exp_avg_sq: range(expAvgSq),
        lr: scalar(h.lr), mom: scalar(h.mom), sqr_mom: scalar(h.sqrMom), eps: scalar(h.eps), wd: scalar(t.decay ? h.wd : 0), step: scalar(steps[k]),
      });
      const param = out['param.out'].data as Float32Array;
      for (let i = 0; i < param.length; i++) check += param[i] * 0;
      this.parameters.set(param, t.offset);
      expAvg.set(out['exp_avg.out'].data as Float32Array, t.offset);
      expAvgSq.set(out['exp_avg_sq.out'].data as Float32Array, t.offset);
    }
    return Number.isFinite(check);
  }

  /** Eval-mode forward: running BatchNorm statistics, no dropout, no gradients. */
  async runEvalStep(feeds: StepFeeds): Promise<StepOutputs> {
    const spec = this.manifest.models.eval;
    const out = await this.evaluate.run(this.roleFeeds(spec, feeds));
    return TrainingSession.byRole(spec, out);
  }

  /** The state_dict (PyTorch names): parameters, running statistics and num_batches_tracked. */
  stateDict(): Map<string, Tensor> {
    const state = new Map<string, Tensor>();
    for (const p of this.manifest.parameters) state.set(p.name, { dtype: 'F32', shape: p.shape, data: this.views.get(p.name)! });
    for (const b of this.manifest.buffers) {
      if (b.dtype === 'int64') state.set(b.name, { dtype: 'I64', shape: [], data: BigInt64Array.from([this.counters.get(b.name) ?? 0n]) });
      else state.set(b.name, { dtype: 'F32', shape: b.shape, data: this.buffers.get(b.name)! });
    }
    return state;
  }

  /**
   * Loads a state_dict safetensors (model only), or a checkpoint directory written by saveCheckpoint
   * (model, optimizer state, trainer state); returns the trainer state when present.
   */
  async loadCheckpoint(path: string): Promise<TrainerState | undefined> {
    return this.applyCheckpoint(await readCheckpoint(path));
  }

  private applyCheckpoint({ modelFile, model, optimizerFile, optimizer }: CheckpointContent): TrainerState | undefined {
    // Everything is checked before anything is written, so a damaged checkpoint leaves the session as it was.
    const { tensors } = model;
    const expected = [...this.manifest.parameters, ...this.manifest.buffers];
    const missing = expected.filter((e) => !tensors.has(e.name));
    if (missing.length > 0) throw new UserError(`${modelFile} lacks ${missing.length} tensors of this model (e.g. ${missing[0].name}); was it saved for other artifacts?`);
    for (const e of expected) {
      const t = tensors.get(e.name)!;
      // Parameters must match exactly; a buffer only in size (a scalar counter may be saved as [] or [1]).
      const fits = this.tensorIndex.has(e.name) ? t.shape.join() === e.shape.join() : t.data.length === e.shape.reduce((a, b) => a * b, 1);
      if (!fits) throw new UserError(`${modelFile}: ${e.name} has shape [${t.shape}], the artifacts need [${e.shape}]; use the checkpoint of the same model`);
    }
    const restored = optimizer && this.readOptimizerState(optimizerFile!, optimizer);
    for (const p of this.manifest.parameters) this.views.get(p.name)!.set(toFloat32(tensors.get(p.name)!));
    this.mirrorStale = true;
    for (const b of this.manifest.buffers) {
      const t = tensors.get(b.name)!;
      if (b.dtype === 'int64') this.counters.set(b.name, BigInt((t.data as BigInt64Array)[0] ?? 0n));
      else this.buffers.set(b.name, Float32Array.from(toFloat32(t)));
    }
    // A weights-only checkpoint (best/) has no optimizer state to restore.
    if (!restored) return undefined;
    // Straight into the optimizer's shared buffers: a full-size staging copy would be 8 bytes per parameter of fresh pages.
    restored.moments.forEach((m, k) => this.adam.loadTensorState(k, m));
    const { trainer } = restored;
    const trainableNames = new Set(trainer.trainable as string[] | undefined ?? this.tensors.map((t) => t.name));
    this.trainable = this.tensors.map((t) => trainableNames.has(t.name));
    this.trainStep = Number(trainer.sessionStep ?? 0);
    return trainer;
  }

  /** optimizer.safetensors checked against this model: every tensor's moments and step, and the trainer state. */
  private readOptimizerState(file: string, { tensors: saved, metadata }: SafetensorsContent) {
    const damaged = `${file} belongs to another checkpoint or is damaged; resume from a checkpoint directory this run saved`;
    const moments = this.tensors.map((t) => {
      const part = (suffix: string, size: number) => {
        const m = saved.get(`${t.name}.${suffix}`);
        if (!m) throw new UserError(`${damaged} (it lacks ${t.name}.${suffix})`);
        if (m.data.length !== size) throw new UserError(`${damaged} (${t.name}.${suffix} has ${m.data.length} values, the model needs ${size})`);
        return m;
      };
      return { expAvg: toFloat32(part('exp_avg', t.size)), expAvgSq: toFloat32(part('exp_avg_sq', t.size)), step: Number(part('step', 1).data[0]) };
    });
    let trainer: unknown;
    try {
      trainer = JSON.parse(metadata.trainer ?? '{}');
    } catch {
      throw new UserError(`${damaged} (its trainer metadata is not JSON)`);
    }
    const { trainable } = (trainer ?? {}) as TrainerState;
    if (typeof trainer !== 'object' || trainer === null || Array.isArray(trainer) || (trainable !== undefined && !(Array.isArray(trainable) && trainable.every((n) => typeof n === 'string')))) {
      throw new UserError(`${damaged} (its trainer metadata is not the object ort-dann saves)`);
    }
    return { moments, trainer: trainer as TrainerState };
  }

  /**
   * Writes a checkpoint directory atomically: model.safetensors (loads into the PyTorch module with
   * strict=True), optimizer.safetensors (Adam moments and step counts, the trainer state as metadata).
   * `weightsOnly` leaves optimizer.safetensors out (two thirds of the bytes): for a checkpoint that is
   * exported or evaluated but never resumed from, such as best/.
   */
  async saveCheckpoint(dir: string, trainer: TrainerState = {}, opts: { weightsOnly?: boolean } = {}): Promise<void> {
    const model = encodeSafetensors(this.stateDict(), { ...this.checkpointMetadata, format: 'pt', ...(opts.weightsOnly ? { 'ort-dann.trainer': JSON.stringify(trainer) } : {}) });
    if (opts.weightsOnly) {
      await writeDirAtomic(dir, { 'model.safetensors': model });
      return;
    }
    const { expAvg, expAvgSq, steps } = this.adam;
    const optimizer = new Map<string, Tensor>();
    this.tensors.forEach((t, k) => {
      optimizer.set(`${t.name}.exp_avg`, { dtype: 'F32', shape: [t.size], data: expAvg.subarray(t.offset, t.offset + t.size) });
      optimizer.set(`${t.name}.exp_avg_sq`, { dtype: 'F32', shape: [t.size], data: expAvgSq.subarray(t.offset, t.offset + t.size) });
      optimizer.set(`${t.name}.step`, { dtype: 'F64', shape: [], data: Float64Array.from([steps[k]]) });
    });
    const meta = {
      trainer: JSON.stringify({ ...trainer, sessionStep: this.trainStep, trainable: this.tensors.filter((_, k) => this.trainable[k]).map((t) => t.name) }),
    };
    await writeDirAtomic(dir, {
      'model.safetensors': model,
      'optimizer.safetensors': encodeSafetensors(optimizer, meta),
    });
  }

  async release(): Promise<void> {
    await this.adam.close();
    await this.train.release();
    await this.evaluate.release();
    await this.optimizerGraph?.release();
  }
}
