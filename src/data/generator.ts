/**
 * Renders labelled samples from a simulator, the built-in particles or a user module. Runs inside the
 * simulator worker threads, or inline with `workers: 0`. Sample `index` is always drawn from the
 * stream `createRng(seed).fork(stream).at(index)`, so its pixels and labels depend only on
 * (seed, stream, index, size), never on which worker renders it or in which chunk.
 *
 * User module contract (`--source ./my-sim.mjs`):
 *
 *   export const outputNames = ['num_particles', 'planar_dist', 'depth_dist']; // optional
 *   export async function generate({ rng, size, index }) { return { image, target }; }
 *
 * - `rng` is an Rng (src/data/rng.ts: next(), uniform(lo, hi), int(lo, hi), normal(mean, sd),
 *   poisson(λ), shuffle(a), …) private to this sample; use it instead of Math.random so runs repeat.
 * - `size` is the model's input size; `index` the sample number (0, 1, 2, … or a fixed validation range).
 * - `image` is one of:
 *     Float32Array / Float64Array / number[]: size*size gray (replicated to 3 channels) or 3*size*size
 *       CHW, values used as given (they should be in [0, 1] like the target images; must be finite);
 *     Uint8Array (not a Buffer) of the same shapes: 8-bit values, divided by 255;
 *     Uint16Array of the same shapes: 16-bit values, divided by 65535;
 *     Buffer: an encoded image file (PNG, JPEG, …), decoded and resized like target images;
 *     string: a path to an image file (relative paths are from the working directory), same decoding.
 * - `target` is a number or an array (number[] / Float32Array / Float64Array) of K finite numbers; K
 *   must be the same for every sample and equal outputNames.length when outputNames is exported.
 * Any violation stops training with a one-line error naming the module and the sample index.
 */
import { pathToFileURL } from 'node:url';
import { UserError } from '../errors.ts';
import { decodeImage } from './decode.ts';
import { NO_NORMALIZATION, normalizeInPlace, type Normalization } from './normalization.ts';
import { PARTICLE_OUTPUT_NAMES, SOURCE_OPTICS, simulateParticles, type Optics } from './particles.ts';
import { createRng, type Rng, type Seed } from '../rng.ts';

export type SimulatorSpec =
  | { kind: 'particles'; optics?: Optics }
  /** `path` is absolute; `label` is how messages name it (what the user typed). */
  | { kind: 'module'; path: string; label: string };

export interface GeneratorConfig {
  spec: SimulatorSpec;
  seed: Seed;
  stream: string;
  size: number;
  normalization?: Normalization;
  /** User modules: the longest a module import or one generate() call may take (default 60 s). */
  timeoutMs?: number;
}

export const DEFAULT_SOURCE_TIMEOUT_MS = 60_000;

/** `promise`, or a UserError with `message` once `ms` have passed (a user call that never settles must not hang the run). */
async function within<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new UserError(message())), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const seconds = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;

export interface RenderedChunk {
  /** [n, 3, size, size]. */
  images: Float32Array;
  /** [n, K]. */
  labels: Float32Array;
  /** The names the simulator declares, if any (travels with chunks so the main thread learns them from a worker). */
  outputNames?: string[];
}

export interface SampleGenerator {
  /** Names the simulator declares; a module without `outputNames` leaves them to the caller. */
  readonly outputNames?: string[];
  /** Renders samples start … start+n-1, each index taken modulo `length` when given. */
  render(start: number, n: number, length?: number): Promise<RenderedChunk>;
}

type GenerateFn = (args: { rng: Rng; size: number; index: number }) => unknown;

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown error';
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'Array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

/** Writes a user image into `out` (3 CHW planes at `offset`) following the contract above. */
async function writeUserImage(image: unknown, size: number, out: Float32Array, offset: number, where: string): Promise<void> {
  const plane = size * size;
  if (typeof image === 'string' || Buffer.isBuffer(image)) {
    const label = typeof image === 'string' ? `${where}: image file ${image}` : `${where}: image Buffer`;
    out.set(await decodeImage(image, size, { label }), offset);
    return;
  }
  let scale: number;
  if (image instanceof Float32Array || image instanceof Float64Array || Array.isArray(image)) scale = 1;
  else if (image instanceof Uint8Array || image instanceof Uint8ClampedArray) scale = 1 / 255;
  else if (image instanceof Uint16Array) scale = 1 / 65535;
  else {
    throw new UserError(`${where}: image is ${typeName(image)}; return a Float32Array (size*size gray or 3*size*size CHW), a Uint8Array, a Uint16Array, a Buffer of an encoded image, or a file path`);
  }
  const values = image as ArrayLike<number>;
  if (values.length !== plane && values.length !== 3 * plane) {
    throw new UserError(`${where}: image has ${values.length} values; expected ${plane} (${size}x${size} gray) or ${3 * plane} (3x${size}x${size} CHW) for size ${size}`);
  }
  const gray = values.length === plane;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`${where}: image value ${i} is ${v}; every pixel must be a finite number`);
    const x = v * scale;
    if (gray) {
      out[offset + i] = x;
      out[offset + plane + i] = x;
      out[offset + 2 * plane + i] = x;
    } else {
      out[offset + i] = x;
    }
  }
}

function readTarget(target: unknown, where: string): number[] {
  let values: number[];
  if (typeof target === 'number') values = [target];
  else if (Array.isArray(target) || target instanceof Float32Array || target instanceof Float64Array) values = Array.from(target as ArrayLike<number>);
  else throw new UserError(`${where}: target is ${typeName(target)}; return a number or an array of numbers`);
  if (values.length === 0) throw new UserError(`${where}: target is empty; return at least one number`);
  values.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new UserError(`${where}: target[${i}] is ${v}; every target must be a finite number`);
    // Targets are trained as float32, where a larger double becomes Infinity.
    if (!Number.isFinite(Math.fround(v))) throw new UserError(`${where}: target[${i}] is ${v}, beyond the float32 range (±3.4e38) the model trains in; return a smaller number`);
  });
  return values;
}

async function loadModule(spec: Extract<SimulatorSpec, { kind: 'module' }>, timeoutMs: number): Promise<{ generate: GenerateFn; outputNames?: string[] }> {
  let mod: Record<string, unknown>;
  try {
    mod = await within(import(pathToFileURL(spec.path).href), timeoutMs, () => `${spec.label}: loading the module did not finish within ${seconds(timeoutMs)} (a top-level await that never settles?); fix the module or raise --source-timeout`);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${spec.label}: failed to load the module (${errorText(e)}); fix it so \`node ${spec.label}\` loads`);
  }
  const generate = mod.generate;
  if (typeof generate !== 'function') {
    throw new UserError(`${spec.label}: exports no generate function; add \`export async function generate({ rng, size, index }) { return { image, target }; }\``);
  }
  const names = mod.outputNames;
  if (names !== undefined) {
    const ok = Array.isArray(names) && names.length > 0 && names.every((n) => typeof n === 'string' && n !== '') && new Set(names).size === names.length;
    if (!ok) throw new UserError(`${spec.label}: outputNames must be a non-empty array of distinct non-empty strings`);
  }
  return { generate: generate as GenerateFn, outputNames: names as string[] | undefined };
}

export async function createGenerator(config: GeneratorConfig): Promise<SampleGenerator> {
  const { spec, size } = config;
  const normalization = config.normalization ?? NO_NORMALIZATION;
  const root = createRng(config.seed).fork(config.stream);
  const plane = size * size;
  const indexOf = (position: number, length?: number) => (length ? position % length : position);

  if (spec.kind === 'particles') {
    const optics = spec.optics ?? SOURCE_OPTICS;
    return {
      outputNames: PARTICLE_OUTPUT_NAMES,
      async render(start, n, length) {
        const images = new Float32Array(n * 3 * plane);
        const labels = new Float32Array(n * 3);
        for (let k = 0; k < n; k++) {
          const base = k * 3 * plane;
          // Render into the first plane, then replicate gray to the other two (the seed's repeat(3, 1, 1)).
          const { labels: l } = simulateParticles(root.at(indexOf(start + k, length)), size, optics, images.subarray(base, base + plane));
          images.copyWithin(base + plane, base, base + plane);
          images.copyWithin(base + 2 * plane, base, base + plane);
          labels.set(l, k * 3);
        }
        normalizeInPlace(images, size, normalization, 0, n);
        return { images, labels, outputNames: PARTICLE_OUTPUT_NAMES };
      },
    };
  }

  const timeoutMs = config.timeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS;
  const { generate, outputNames: declared } = await loadModule(spec, timeoutMs);
  // The declared names fix the label count; otherwise the first sample this generator renders does.
  let outputCount = declared?.length;
  const one = async (index: number, images: Float32Array, offset: number): Promise<number[]> => {
    const where = `${spec.label}: sample ${index}`;
    let result: unknown;
    try {
      result = await within(Promise.resolve(generate({ rng: root.at(index), size, index })), timeoutMs,
        () => `${spec.label}: generate() did not return sample ${index} within ${seconds(timeoutMs)}; fix the module, or raise --source-timeout if one sample really takes longer`);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${spec.label}: generate() threw for sample ${index}: ${errorText(e)}; fix the module`);
    }
    if (!result || typeof result !== 'object' || !('image' in result) || !('target' in result)) {
      throw new UserError(`${where}: generate() returned ${typeName(result)}; return an object { image, target }`);
    }
    const { image, target } = result as { image: unknown; target: unknown };
    await writeUserImage(image, size, images, offset, where);
    const values = readTarget(target, where);
    if (outputCount === undefined) outputCount = values.length;
    if (values.length !== outputCount) {
      const why = declared ? `outputNames has ${declared.length} names` : `earlier samples had ${outputCount}`;
      throw new UserError(`${where}: target has ${values.length} values but ${why}; return the same number every time`);
    }
    return values;
  };
  const render = async (start: number, n: number, length?: number): Promise<RenderedChunk> => {
    const images = new Float32Array(n * 3 * plane);
    const rows: number[][] = [];
    for (let k = 0; k < n; k++) rows.push(await one(indexOf(start + k, length), images, k * 3 * plane));
    normalizeInPlace(images, size, normalization, 0, n);
    return { images, labels: Float32Array.from(rows.flat()), outputNames: declared };
  };
  return { outputNames: declared, render };
}
