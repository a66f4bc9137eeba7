/**
 * fastai's Adam (docs/fastai-semantics.md §2) over one contiguous float32 parameter
 * buffer, on the calling thread or split across worker threads sharing the buffers.
 *
 * Per parameter tensor, each step, when the tensor is trainable (frozen tensors are skipped entirely:
 * no decay, no moment update, no step count, as fastai skips parameters without a gradient):
 *   p ← p·(1 − lr·wd)            only if its `decay` flag is set and wd ≠ 0 (decoupled, true_wd)
 *   m ← mom·m + (1 − mom)·g       (dampened average, mom = the scheduled β1)
 *   v ← sqrMom·v + (1 − sqrMom)·g²
 *   step ← step + 1               (per tensor)
 *   p ← p − lr/(1 − mom^step) · m / (sqrt(v/(1 − sqrMom^step)) + eps)
 *
 * Precision: float32 semantics throughout. The scalar coefficients are computed in float64 as fastai's
 * Python does, then rounded to float32; every element operation is rounded to float32 where PyTorch's
 * float32 kernels round (see adamKernel), so results match fastai on PyTorch CPU (AVX2 build) bit for
 * bit in nearly all elements, and otherwise within 1 ulp of an intermediate. The calling-thread and
 * worker paths run the same kernel on the same inputs, so they agree bit for bit.
 */
import { Worker } from 'node:worker_threads';
import { instantiateSimdAdam, type SimdAdam, simdModule } from './adam-simd.ts';
import type { GroupHyper } from './types.ts';

/** One named parameter tensor inside the flat buffer. */
export interface AdamTensor {
  name: string;
  offset: number;
  size: number;
  group: number;
  /** fastai `do_wd`: false for norm-layer and bias parameters (wd_bn_bias=False). */
  decay: boolean;
}

/** Adam's per-parameter state; `steps` holds one count per tensor, in `tensors` order. */
export interface AdamState {
  expAvg: Float32Array;
  expAvgSq: Float32Array;
  steps: Float64Array;
}

export interface AdamStepperOptions {
  params: Float32Array;
  grads: Float32Array;
  tensors: readonly AdamTensor[];
  /** Worker threads for the update (default 2); 0 runs it on the calling thread. */
  workers?: number;
}

/** Per-chunk record in the work lists: start, end, then the eight float32 coefficients adamKernel reads. */
const STRIDE = 10;
/** Worker split points are rounded up to 16 floats (64-byte cache lines), so workers never share a line. */
const ALIGN = 16;

/** A Float32Array on a SharedArrayBuffer, as the worker path requires for params and grads. */
export function sharedFloat32Array(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
}

/** Shared memories made by adamBuffers, by their buffer; the moments of a stepper on them go in the rest of the memory. */
const simdMemories = new WeakMap<ArrayBufferLike, { memory: WebAssembly.Memory; free: number; end: number }>();
const PAGE = 65536;

/**
 * Params and grads for an AdamStepper that runs the SIMD kernel (adam-simd.ts, 2–3× faster): both,
 * and the moments the stepper adds, in one shared WebAssembly.Memory. Falls back to two
 * sharedFloat32Arrays (the scalar kernel) where WebAssembly SIMD is missing or n is too large.
 */
export function adamBuffers(n: number): { params: Float32Array; grads: Float32Array } {
  const slot = Math.ceil((n * 4) / 64) * 64; // each array starts on a cache line
  const pages = Math.ceil((4 * slot) / PAGE);
  if (!simdModule() || pages > 65536) return { params: sharedFloat32Array(n), grads: sharedFloat32Array(n) };
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  simdMemories.set(memory.buffer, { memory, free: 2 * slot, end: 4 * slot });
  return { params: new Float32Array(memory.buffer, 0, n), grads: new Float32Array(memory.buffer, slot, n) };
}

/** The moments next to params and grads when they came from adamBuffers (the SIMD kernel's precondition). */
function simdMoments(params: Float32Array, grads: Float32Array): { memory: WebAssembly.Memory; m: Float32Array; v: Float32Array } | undefined {
  const home = simdMemories.get(params.buffer);
  if (!home || grads.buffer !== params.buffer) return undefined;
  const n = params.length;
  const slot = Math.ceil((n * 4) / 64) * 64;
  if (home.free + 2 * slot > home.end) return undefined; // a second stepper on the same buffers
  const m = new Float32Array(home.memory.buffer, home.free, n);
  const v = new Float32Array(home.memory.buffer, home.free + slot, n);
  home.free += 2 * slot;
  return { memory: home.memory, m, v };
}

/**
 * Runs the update over a work list of chunk records. Shared by the calling thread and the workers
 * (which import this module), so both paths execute identical arithmetic.
 *
 * Each line reproduces one PyTorch float32 CPU op of fastai's step, rounding where PyTorch rounds:
 * scalar coefficients arrive as float32; `add_(g, alpha)` and `addcmul_` are fused multiply-adds in
 * PyTorch's vectorised kernels, emulated by adding an exact float64 product (float32 × float32 fits
 * in 53 bits) and rounding once to float32.
 */
export function adamKernel(p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, work: Float64Array): boolean {
  const f = Math.fround;
  // Any NaN or ±Inf written to a parameter makes this sum non-finite: one multiply-add per element.
  let check = 0;
  for (let o = 0; o < work.length; o += STRIDE) {
    const start = work[o] | 0;
    const end = work[o + 1] | 0;
    const decay = work[o + 2];
    const mom = work[o + 3];
    const damp1 = work[o + 4];
    const sqrMom = work[o + 5];
    const damp2 = work[o + 6];
    const debias2 = work[o + 7];
    const eps = work[o + 8];
    const negStep = work[o + 9];
    for (let i = start; i < end; i++) {
      const gi = g[i];
      const mi = f(f(m[i] * mom) + damp1 * gi); //             m.mul_(mom).add_(g, alpha=1-mom)
      const vi = f(f(v[i] * sqrMom) + f(damp2 * gi) * gi); //  v.mul_(sqr_mom).addcmul_(g, g, value=1-sqr_mom)
      m[i] = mi;
      v[i] = vi;
      const den = f(f(Math.sqrt(f(vi / debias2))) + eps); //   (v/debias2).sqrt() + eps
      const pi = f(f(p[i] * decay) + f(f(negStep * mi) / den)); // p.mul_(1-lr*wd); p.addcdiv_(m, den, value=-lr/debias1)
      p[i] = pi;
      check += pi * 0;
    }
  }
  return Number.isFinite(check);
}

/**
 * adamKernel through the SIMD module: whole groups of 4 floats in WebAssembly, the remainder of each
 * chunk (< 4 floats) by adamKernel itself; bit-identical to adamKernel over the whole list.
 */
export function adamKernelSimd(simd: SimdAdam, p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, work: Float64Array): boolean {
  const at = (a: Float32Array, i: number) => a.byteOffset + 4 * i;
  let check = 0; // as in adamKernel: NaN once any updated parameter is NaN or ±Inf
  for (let o = 0; o < work.length; o += STRIDE) {
    const start = work[o] | 0;
    const end = work[o + 1] | 0;
    const quads = (end - start) >> 2;
    simd(at(p, start), at(g, start), at(m, start), at(v, start), quads, work[o + 2], work[o + 3], work[o + 4], work[o + 5], work[o + 6], work[o + 7], work[o + 8], work[o + 9]);
    const rest = start + 4 * quads;
    for (let i = start; i < rest; i++) check += p[i] * 0;
    if (rest < end) {
      const tail = work.slice(o, o + STRIDE);
      tail[0] = rest;
      if (!adamKernel(p, g, m, v, tail)) check = NaN;
    }
  }
  return Number.isFinite(check);
}

/** fastai `debias(mom, 1-mom, step)`, kept in its algebraic form (not simplified) to round as fastai does. */
const debias = (mom: number, step: number) => ((1 - mom) * (1 - mom ** step)) / (1 - mom);

interface WorkerSlot {
  worker: Worker;
  pending?: { resolve: (finite: boolean) => void; reject: (e: Error) => void };
}

const describe = (a: Float32Array) => ({ buffer: a.buffer, byteOffset: a.byteOffset, length: a.length });

export class AdamStepper {
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly tensors: readonly AdamTensor[];
  readonly expAvg: Float32Array;
  readonly expAvgSq: Float32Array;
  readonly steps: Float64Array;
  private readonly slots: WorkerSlot[];
  /** The SIMD kernel on the calling thread, when params and grads came from adamBuffers. */
  private readonly simd?: SimdAdam;
  private inFlight = false;
  private failure?: Error;

  constructor(o: AdamStepperOptions) {
    const n = o.params.length;
    const nWorkers = o.workers ?? 2;
    if (o.grads.length !== n) throw new RangeError(`grads has ${o.grads.length} elements, params ${n}`);
    for (const t of o.tensors) {
      if (!(t.offset >= 0 && t.size >= 0 && t.offset + t.size <= n)) {
        throw new RangeError(`tensor ${t.name} [${t.offset}, +${t.size}) lies outside the ${n}-element buffer`);
      }
    }
    if (nWorkers > 0 && !(o.params.buffer instanceof SharedArrayBuffer && o.grads.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError('AdamStepper with workers needs params and grads on SharedArrayBuffers (see sharedFloat32Array)');
    }
    this.params = o.params;
    this.grads = o.grads;
    this.tensors = o.tensors;
    const simd = simdMoments(o.params, o.grads);
    const alloc = nWorkers > 0 ? sharedFloat32Array : (len: number) => new Float32Array(len);
    this.expAvg = simd?.m ?? alloc(n);
    this.expAvgSq = simd?.v ?? alloc(n);
    this.steps = new Float64Array(o.tensors.length);
    if (simd && nWorkers === 0) this.simd = instantiateSimdAdam(simd.memory);
    const data = { p: describe(this.params), g: describe(this.grads), m: describe(this.expAvg), v: describe(this.expAvgSq), memory: simd?.memory, module: simd ? simdModule() : undefined };
    this.slots = Array.from({ length: nWorkers }, (_, k) => this.spawn({ ...data, share: [k, nWorkers] }));
  }

  private spawn(data: object): WorkerSlot {
    const slot: WorkerSlot = { worker: new Worker(new URL('./adam-worker.mjs', import.meta.url), { workerData: data }) };
    const fail = (e: Error) => {
      this.failure ??= e;
      slot.pending?.reject(e);
      slot.pending = undefined;
    };
    slot.worker.on('message', (finite: boolean) => {
      slot.pending?.resolve(finite);
      slot.pending = undefined;
    });
    slot.worker.on('error', fail);
    slot.worker.on('exit', (code) => fail(new Error(`Adam worker exited (code ${code})`)));
    // Idle workers must not keep the process alive; step() refs them while they work.
    slot.worker.unref();
    return slot;
  }

  /**
   * One optimizer step with per-group hyper-parameters; `trainable[i]` says whether tensor i has a
   * gradient this step (see trainableMask in param-groups.ts). Resolves to whether every updated
   * parameter is finite (the loop's --on-nan policy acts on it; a NaN model must never be saved).
   */
  async step(hypers: readonly GroupHyper[], trainable: ArrayLike<boolean>): Promise<boolean> {
    if (this.failure) throw this.failure;
    if (this.inFlight) throw new Error('AdamStepper.step called while a step is running');
    if (trainable.length !== this.tensors.length) {
      throw new RangeError(`trainable mask has ${trainable.length} entries for ${this.tensors.length} tensors`);
    }
    const lists = this.plan(hypers, trainable, Math.max(1, this.slots.length));
    if (this.slots.length === 0) {
      return this.simd
        ? adamKernelSimd(this.simd, this.params, this.grads, this.expAvg, this.expAvgSq, lists[0])
        : adamKernel(this.params, this.grads, this.expAvg, this.expAvgSq, lists[0]);
    }
    this.inFlight = true;
    try {
      const finite = await Promise.all(
        this.slots.map(
          (slot, w) =>
            new Promise<boolean>((resolve, reject) => {
              slot.pending = { resolve, reject };
              slot.worker.ref();
              slot.worker.postMessage(lists[w]);
            }),
        ),
      );
      return finite.every(Boolean);
    } finally {
      for (const s of this.slots) s.worker.unref();
      this.inFlight = false;
    }
  }

  /** Advances the step counts and cuts the trainable elements into `parts` equal, aligned work lists. */
  private plan(hypers: readonly GroupHyper[], trainable: ArrayLike<boolean>, parts: number): Float64Array[] {
    type Seg = { start: number; end: number; coeffs: number[] };
    // Checked before any step count moves, so a bad call leaves the state as it was.
    const missing = this.tensors.find((t, i) => trainable[i] && !hypers[t.group]);
    if (missing) throw new RangeError(`tensor ${missing.name} is in group ${missing.group}, but only ${hypers.length} groups have hyper-parameters`);
    const segs: Seg[] = [];
    let total = 0;
    this.tensors.forEach((t, i) => {
      if (!trainable[i]) return;
      const h = hypers[t.group];
      const step = ++this.steps[i];
      if (t.size === 0) return;
      // Python float64 scalars, as fastai computes them, then float32 as PyTorch casts them.
      const decay = t.decay && h.wd !== 0 ? 1 - h.lr * h.wd : 1;
      const debias1 = debias(h.mom, step);
      const debias2 = debias(h.sqrMom, step);
      const coeffs = [decay, h.mom, 1 - h.mom, h.sqrMom, 1 - h.sqrMom, debias2, h.eps, -h.lr / debias1].map(Math.fround);
      segs.push({ start: t.offset, end: t.offset + t.size, coeffs });
      total += t.size;
    });
    const lists: number[][] = Array.from({ length: parts }, () => []);
    // Worker k takes the trainable elements from ordinal cut(k) on; a cut inside a tensor moves up to a
    // cache-line boundary.
    const cut = (k: number) => Math.ceil((k * total) / parts);
    let w = 0;
    let done = 0;
    for (const s of segs) {
      let start = s.start;
      while (start < s.end) {
        while (w < parts - 1 && done >= cut(w + 1)) w++;
        let end = s.end;
        const toCut = w < parts - 1 ? cut(w + 1) - done : Infinity;
        if (end - start > toCut) end = Math.min(s.end, Math.ceil((start + toCut) / ALIGN) * ALIGN);
        lists[w].push(start, end, ...s.coeffs);
        done += end - start;
        start = end;
      }
    }
    return lists.map((l) => Float64Array.from(l));
  }

  /** fastai `clear_state()`, run at freeze/unfreeze: zero moments and step counts. */
  resetState(): void {
    this.expAvg.fill(0);
    this.expAvgSq.fill(0);
    this.steps.fill(0);
  }

  /** The live state (views, not copies): copy or serialize it before the next step. */
  state(): AdamState {
    return { expAvg: this.expAvg, expAvgSq: this.expAvgSq, steps: this.steps };
  }

  /** Restores one tensor's moments and step count (in `tensors` order), as a checkpoint saved them. */
  loadTensorState(k: number, s: { expAvg: Float32Array; expAvgSq: Float32Array; step: number }): void {
    const t = this.tensors[k];
    if (!t || s.expAvg.length !== t.size || s.expAvgSq.length !== t.size) {
      throw new RangeError(`Adam state for tensor ${k} has (${s.expAvg.length}, ${s.expAvgSq.length}) values; the tensor has ${t?.size ?? 'no'} (${this.tensors.length} tensors)`);
    }
    this.expAvg.set(s.expAvg, t.offset);
    this.expAvgSq.set(s.expAvgSq, t.offset);
    this.steps[k] = s.step;
  }

  async close(): Promise<void> {
    for (const s of this.slots) s.worker.removeAllListeners('exit');
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.slots.length = 0;
  }
}
