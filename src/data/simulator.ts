/**
 * Simulator sources (built-in particles or a user module) rendered in worker threads, because the
 * trainer's session.run blocks the main event loop. Batches are assembled from chunks requested ahead
 * of time; since every sample depends only on (seed, stream, index), the data are identical for any
 * worker count or chunking.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { extname, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { BatchSource, ImageBatch } from '../training/types.ts';
import { UserError } from '../errors.ts';
import { createGenerator, DEFAULT_SOURCE_TIMEOUT_MS, type GeneratorConfig, type RenderedChunk, type SampleGenerator, type SimulatorSpec } from './generator.ts';
import { NO_NORMALIZATION, type Normalization } from './normalization.ts';
import { PARTICLE_LABEL_RANGES } from './particles.ts';
import type { Seed } from '../rng.ts';

export const MODULE_EXTENSIONS = ['.mjs', '.js', '.cjs', '.ts', '.mts'];

export interface SimulatorOptions {
  size: number;
  seed: Seed;
  /** Stream name: 'source-train' by default; use e.g. 'source-val' for a validation set. */
  stream?: string;
  /** A finite set of samples 0…length-1 (validation); undefined = endless fresh samples. */
  length?: number;
  normalization?: Normalization;
  /** Worker threads; 0 renders in the calling thread (blocking). Default: cores - 1, at least 1, at most 4. */
  workers?: number;
  /** Batches rendered ahead of the one being consumed; default 2 (never fewer than the workers). */
  prefetchBatches?: number;
  /** Name of the source in batches and messages. */
  name?: string;
  /** User modules: the longest one sample (or the module import) may take; default 60 s. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (chunk: RenderedChunk) => void;
  reject: (e: Error) => void;
}

/** Worker threads speaking sim-worker.ts's protocol; each request goes to the least busy worker. */
class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private failure: Error | undefined;
  private closing = false;
  private readonly config: GeneratorConfig;
  private readonly name: string;

  constructor(config: GeneratorConfig, count: number, name: string) {
    this.config = config;
    this.name = name;
    // A dying worker in a user simulator is the module's doing (process.exit, an uncaught async throw).
    const crash = (text: string) => (config.spec.kind === 'module' ? new UserError(`${name}: ${text}; fix the module`) : new Error(`${name}: ${text}`));
    for (let w = 0; w < count; w++) {
      const worker = new Worker(new URL('./sim-worker.mjs', import.meta.url), { workerData: config });
      worker.unref(); // only outstanding requests keep the process alive
      worker.on('message', (msg: { type: string; id: number; message?: string; user?: boolean } & Partial<RenderedChunk>) => {
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        if (--this.busy[w] === 0 && !this.closing) worker.unref();
        if (msg.type === 'chunk') p.resolve({ images: msg.images!, labels: msg.labels!, outputNames: msg.outputNames });
        else p.reject(msg.user ? new UserError(msg.message!) : new Error(`simulator worker: ${msg.message}`));
      });
      const fail = (e: Error) => {
        this.failure ??= e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      };
      worker.on('error', (e) => fail(crash(`uncaught error in the simulator worker: ${e.message.split('\n')[0]}`)));
      worker.on('exit', (code) => fail(crash(`the simulator worker exited with code ${code}`)));
      this.workers.push(worker);
      this.busy.push(0);
    }
  }

  render(start: number, n: number, length?: number): Promise<RenderedChunk> {
    if (this.failure) return Promise.reject(this.failure);
    let w = 0;
    for (let i = 1; i < this.workers.length; i++) if (this.busy[i] < this.busy[w]) w = i;
    const id = this.nextId++;
    if (this.busy[w]++ === 0) this.workers[w].ref();
    // The worker times each generate() itself; this catches what it cannot: a module that blocks its
    // thread (an endless synchronous loop), which only terminating the worker ends.
    const perSample = this.config.timeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
    // The slack covers the worker's start (loading TypeScript support and the module) on a busy machine.
    const limit = (n + 1) * perSample + 30_000;
    return new Promise<RenderedChunk>((resolve, reject) => {
      const watchdog = setTimeout(() => {
        const last = start + n - 1;
        const e = new UserError(`${this.name}: ${last > start ? `samples ${start}…${last}` : `sample ${start}`} did not finish within ${Math.round(limit / 1000)} s (the module blocks its thread, e.g. an endless loop); fix the module, or raise --source-timeout if samples really take that long`);
        this.failure ??= e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
        void this.workers[w].terminate();
      }, limit);
      const settle = <T>(f: (v: T) => void) => (v: T) => { clearTimeout(watchdog); f(v); };
      this.pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      this.workers[w].postMessage({ type: 'render', id, start, n, length });
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('simulator closed');
    // Workers stay ref'd while terminating (replies still in flight must not unref them), or an
    // otherwise idle process exits before terminate() settles.
    this.closing = true;
    await Promise.all(this.workers.map((w) => (w.ref(), w.terminate())));
  }
}

interface Chunk {
  start: number;
  n: number;
  data: Promise<RenderedChunk>;
}

export class SimulatorSource implements BatchSource {
  readonly name: string;
  readonly labelled = true;
  readonly length: number | undefined;
  readonly outputNames: string[];
  /** Inclusive ranges of the labels when the simulator documents them (particles), for label scaling. */
  readonly labelRanges?: Record<string, [number, number]>;
  private readonly size: number;
  private readonly prefetchBatches: number;
  private readonly workerCount: number;
  private readonly renderer: Pick<SampleGenerator, 'render'>;
  private readonly closer: () => Promise<void>;
  private chunks: Chunk[] = [];
  private requestedUntil = 0;
  private next = 0;

  constructor(args: {
    name: string;
    size: number;
    length?: number;
    outputNames: string[];
    labelRanges?: Record<string, [number, number]>;
    prefetchBatches: number;
    workerCount: number;
    renderer: Pick<SampleGenerator, 'render'>;
    close: () => Promise<void>;
  }) {
    this.name = args.name;
    this.size = args.size;
    this.length = args.length;
    this.outputNames = args.outputNames;
    this.labelRanges = args.labelRanges;
    this.prefetchBatches = args.prefetchBatches;
    this.workerCount = Math.max(1, args.workerCount);
    this.renderer = args.renderer;
    this.closer = args.close;
  }

  /** Position of the next sample to be served (an absolute counter; index = position mod length for finite sets). */
  get position(): number {
    return this.next;
  }

  /** Continues from `position`, e.g. when resuming a run; prefetched samples elsewhere are dropped. */
  seek(position: number): void {
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`seek: position must be a non-negative integer, got ${position}`);
    if (position === this.next) return;
    this.next = position;
    this.chunks = [];
    this.requestedUntil = position;
  }

  /**
   * A finite set restarts at sample 0 (at the next multiple of `length`, which the prefetch has
   * usually rendered already). An endless simulator just keeps going: every sample is fresh.
   */
  startEpoch(_epoch: number): void {
    if (this.length === undefined) return;
    this.seek(Math.ceil(this.next / this.length) * this.length);
  }

  /**
   * Requests whole batches (one chunk = `count` samples, one worker each) so a batch is usually handed
   * over without copying; with several workers, as many batches as workers are in flight.
   */
  private fill(until: number, count: number): void {
    while (this.requestedUntil < until) {
      const start = this.requestedUntil;
      const data = this.renderer.render(start, count, this.length);
      data.catch(() => undefined); // a prefetched failure is reported to whoever awaits it
      this.chunks.push({ start, n: count, data });
      this.requestedUntil += count;
    }
  }

  async nextBatch(count: number): Promise<ImageBatch> {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`nextBatch: count must be a positive integer, got ${count}`);
    const plane = 3 * this.size * this.size;
    const k = this.outputNames.length;
    const ahead = Math.max(this.prefetchBatches, this.workerCount);
    this.fill(this.next + count * (1 + ahead), count);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(`sim:${this.length ? (this.next + i) % this.length : this.next + i}`);
    const parts: { data: RenderedChunk; from: number; take: number }[] = [];
    let pos = this.next;
    while (pos < this.next + count) {
      const chunk = this.chunks[0];
      const data = await chunk.data;
      if (data.labels.length !== chunk.n * k) {
        throw new UserError(`${this.name}: samples ${chunk.start}-${chunk.start + chunk.n - 1} have ${data.labels.length / chunk.n} targets each, sample 0 had ${k}; return the same number every time`);
      }
      const from = pos - chunk.start;
      const take = Math.min(chunk.start + chunk.n - pos, this.next + count - pos);
      parts.push({ data, from, take });
      pos += take;
      if (pos === chunk.start + chunk.n) this.chunks.shift();
    }
    this.next = pos;
    this.fill(this.next + count * ahead, count);
    if (parts.length === 1 && parts[0].from === 0 && parts[0].take * plane === parts[0].data.images.length) {
      return { images: parts[0].data.images, count, size: this.size, labels: parts[0].data.labels, ids };
    }
    // The batch size changed or a seek split chunks: assemble by copying.
    const images = new Float32Array(count * plane);
    const labels = new Float32Array(count * k);
    let filled = 0;
    for (const { data, from, take } of parts) {
      images.set(data.images.subarray(from * plane, (from + take) * plane), filled * plane);
      labels.set(data.labels.subarray(from * k, (from + take) * k), filled * k);
      filled += take;
    }
    return { images, count, size: this.size, labels, ids };
  }

  async close(): Promise<void> {
    this.chunks = [];
    await this.closer();
  }
}

export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/** What `--source` names: 'particles', or a path to a simulator module. */
export function simulatorSpec(source: string): SimulatorSpec {
  if (source === 'particles') return { kind: 'particles' };
  const path = resolve(source);
  if (!MODULE_EXTENSIONS.includes(extname(path).toLowerCase())) {
    throw new UserError(`--source ${source}: not 'particles', a folder, or a simulator module (${MODULE_EXTENSIONS.join(' ')}); check the value`);
  }
  if (!existsSync(path)) throw new UserError(`--source ${source}: file not found; check the path`);
  return { kind: 'module', path, label: source };
}

/**
 * Opens a simulator source. Sample 0 is rendered once up front, so a broken user module fails here,
 * before training starts, and its label count is known.
 */
export async function openSimulator(spec: SimulatorSpec, options: SimulatorOptions): Promise<SimulatorSource> {
  if (options.length !== undefined && !(Number.isSafeInteger(options.length) && options.length > 0)) {
    throw new RangeError(`openSimulator: length must be a positive integer, got ${options.length}`);
  }
  const config: GeneratorConfig = {
    spec,
    seed: options.seed,
    stream: options.stream ?? 'source-train',
    size: options.size,
    normalization: options.normalization ?? NO_NORMALIZATION,
    timeoutMs: options.timeoutMs,
  };
  const workers = options.workers ?? defaultWorkerCount();
  const name = options.name ?? (spec.kind === 'particles' ? 'particles' : spec.label);
  let renderer: Pick<SampleGenerator, 'render'>;
  let close: () => Promise<void>;
  if (workers === 0) {
    renderer = await createGenerator(config);
    close = async () => undefined;
  } else {
    // The user module is imported only inside the workers, never in the trainer's thread.
    const pool = new WorkerPool(config, workers, name);
    renderer = pool;
    close = () => pool.close();
  }
  let probe: RenderedChunk;
  try {
    probe = await renderer.render(0, 1);
  } catch (e) {
    await close();
    throw e;
  }
  const k = probe.labels.length;
  return new SimulatorSource({
    name,
    size: options.size,
    length: options.length,
    outputNames: probe.outputNames ? [...probe.outputNames] : Array.from({ length: k }, (_, i) => `output_${i}`),
    labelRanges: spec.kind === 'particles' ? PARTICLE_LABEL_RANGES : undefined,
    prefetchBatches: options.prefetchBatches ?? 2,
    workerCount: Math.max(1, workers),
    renderer,
    close,
  });
}
