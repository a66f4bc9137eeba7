/**
 * The built-in domain-shift demo: a "real microscope" target domain made by the particles physics
 * imaged through DEMO_TARGET_OPTICS (astigmatic PSF with a halo that widens faster with depth, uneven
 * illumination with vignetting and a gradient, Poisson shot noise plus read noise, gamma and gain
 * change, 8-bit quantisation), so DANN has a realistic gap to close and its effect can be measured.
 *
 * Layout under `out`:
 *   target-train/images/000000.png …   unlabelled target training images (8-bit gray PNG)
 *   target-train-labels.csv            their labels, for evaluation only (kept outside the folder)
 *   target-val/images/…, target-val-labels.csv
 *   source-val/images/…, source-val/labels.csv
 *                                      a labelled source-domain folder (16-bit PNG, SOURCE_OPTICS)
 *   demo.json                          the settings, so ensureDemoData can reuse a matching folder
 */
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { UserError } from '../errors.ts';
import { DEMO_TARGET_OPTICS, PARTICLE_OUTPUT_NAMES, SOURCE_OPTICS, type Optics } from './particles.ts';
import type { Seed } from '../rng.ts';
import { openSimulator } from './simulator.ts';

export interface DemoDataOptions {
  out: string;
  /** Image side in px; default 128. */
  size?: number;
  /** Target training images; default 1000. */
  train?: number;
  /** Target validation images; default 250. */
  val?: number;
  /** Labelled source-domain validation images; default 250 (0 = none). */
  sourceVal?: number;
  seed?: Seed;
}

export interface DemoData {
  out: string;
  targetTrain: string;
  targetTrainLabels: string;
  targetVal: string;
  targetValLabels: string;
  /** Labelled folder (images/ + labels.csv), absent when sourceVal is 0. */
  sourceVal?: string;
  /** Wall-clock seconds to generate, 0 when reused. */
  seconds: number;
}

const MANIFEST = 'demo.json';
const FORMAT_VERSION = 1;
const ENTRIES = new Set([MANIFEST, 'target-train', 'target-val', 'source-val', 'target-train-labels.csv', 'target-val-labels.csv']);

interface Manifest {
  format: number;
  size: number;
  train: number;
  val: number;
  sourceVal: number;
  seed: Seed;
  outputs: string[];
  sourceOptics: Optics;
  targetOptics: Optics;
}

function settings(options: DemoDataOptions): Manifest {
  const m: Manifest = {
    format: FORMAT_VERSION,
    size: options.size ?? 128,
    train: options.train ?? 1000,
    val: options.val ?? 250,
    sourceVal: options.sourceVal ?? 250,
    seed: options.seed ?? 0,
    outputs: PARTICLE_OUTPUT_NAMES,
    sourceOptics: SOURCE_OPTICS,
    targetOptics: DEMO_TARGET_OPTICS,
  };
  const positive = (name: string, v: number, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new UserError(`demo-data: --${name} must be an integer >= ${min}, got ${v}`);
  };
  positive('size', m.size, 8);
  positive('train', m.train, 1);
  positive('val', m.val, 1);
  positive('source-val', m.sourceVal, 0);
  if (typeof m.seed === 'number' && !Number.isSafeInteger(m.seed)) throw new UserError(`demo-data: --seed must be an integer, got ${m.seed}`);
  return m;
}

function paths(out: string, m: Manifest): DemoData {
  return {
    out,
    targetTrain: join(out, 'target-train'),
    targetTrainLabels: join(out, 'target-train-labels.csv'),
    targetVal: join(out, 'target-val'),
    targetValLabels: join(out, 'target-val-labels.csv'),
    sourceVal: m.sourceVal > 0 ? join(out, 'source-val') : undefined,
    seconds: 0,
  };
}

async function readManifest(out: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(join(out, MANIFEST), 'utf8'));
  } catch {
    return undefined;
  }
}

/** Refuses to replace anything that is not a demo folder this code wrote. */
async function checkReplaceable(out: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(out);
  } catch {
    return;
  }
  if (entries.length === 0) return;
  const foreign = entries.find((e) => !ENTRIES.has(e));
  if (!(await readManifest(out)) || foreign) {
    throw new UserError(`demo-data: ${out} exists and is not a demo-data folder${foreign ? ` (it holds ${foreign})` : ''}; choose another --out or empty it`);
  }
}

/** Rounds [0, 1] floats to 8- or 16-bit integers (a plain loop: Uint8Array.from with a callback is ~30x slower). */
function quantize(gray: Float32Array, bits: 8 | 16): Uint8Array | Uint16Array {
  const max = bits === 8 ? 255 : 65535;
  const out = bits === 8 ? new Uint8Array(gray.length) : new Uint16Array(gray.length);
  for (let i = 0; i < gray.length; i++) out[i] = gray[i] * max + 0.5; // values are in [0, 1]: truncation rounds
  return out;
}

/** Renders `count` images of one split in worker threads, writes them as PNG and returns the label CSV text. */
async function writeSplit(dir: string, stream: string, count: number, m: Manifest, optics: Optics, bits: 8 | 16): Promise<string> {
  const imageDir = join(dir, 'images');
  await mkdir(imageDir, { recursive: true });
  const digits = Math.max(6, String(count - 1).length);
  const plane = m.size * m.size;
  const rows = [`filename,${PARTICLE_OUTPUT_NAMES.join(',')}`];
  // Same streams as simulateParticles(createRng(seed).fork(stream).at(i)). Large splits render in worker
  // threads while this thread encodes; small ones inline, since a worker takes ~0.3 s to start.
  const workers = count >= 256 ? availableParallelism() : 0;
  const sim = await openSimulator({ kind: 'particles', optics }, { size: m.size, seed: m.seed, stream, length: count, workers });
  try {
    const batch = 32;
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const b = await sim.nextBatch(n);
      const writes: Promise<unknown>[] = [];
      for (let k = 0; k < n; k++) {
        const name = `${String(start + k).padStart(digits, '0')}.png`;
        const l = b.labels!.subarray(k * 3, k * 3 + 3);
        rows.push(`${name},${l[0]},${l[1].toPrecision(7)},${l[2].toPrecision(7)}`);
        const gray = b.images.subarray(k * 3 * plane, k * 3 * plane + plane); // the three planes are equal
        const pixels = quantize(gray, bits);
        const image = sharp(pixels, { raw: { width: m.size, height: m.size, channels: 1 } }).toColourspace(bits === 16 ? 'grey16' : 'b-w');
        writes.push(image.png({ compressionLevel: 3 }).toFile(join(imageDir, name)));
      }
      await Promise.all(writes);
    }
  } finally {
    await sim.close();
  }
  return `${rows.join('\n')}\n`;
}

/**
 * Writes the demo data set under `options.out` (replacing an earlier demo folder there). Takes a few
 * seconds at the defaults. Files appear atomically: everything is written to a sibling folder first.
 */
export async function generateDemoData(options: DemoDataOptions): Promise<DemoData> {
  const started = performance.now();
  const out = resolve(options.out);
  const m = settings(options);
  await checkReplaceable(out);
  const work = join(dirname(out), `.${basename(out)}.partial-${process.pid}`);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  try {
    const w = paths(work, m);
    await writeFile(w.targetTrainLabels, await writeSplit(w.targetTrain, 'demo-target-train', m.train, m, DEMO_TARGET_OPTICS, 8));
    await writeFile(w.targetValLabels, await writeSplit(w.targetVal, 'demo-target-val', m.val, m, DEMO_TARGET_OPTICS, 8));
    if (w.sourceVal) await writeFile(join(w.sourceVal, 'labels.csv'), await writeSplit(w.sourceVal, 'demo-source-val', m.sourceVal, m, SOURCE_OPTICS, 16));
    await writeFile(join(work, MANIFEST), `${JSON.stringify(m, null, 2)}\n`);
    await rm(out, { recursive: true, force: true });
    await rename(work, out);
  } catch (e) {
    await rm(work, { recursive: true, force: true });
    throw e;
  }
  return { ...paths(out, m), seconds: (performance.now() - started) / 1000 };
}

/** Reuses `options.out` when it holds demo data made with the same settings, else generates it. */
export async function ensureDemoData(options: DemoDataOptions): Promise<DemoData> {
  const out = resolve(options.out);
  const m = settings(options);
  const existing = await readManifest(out);
  if (existing && JSON.stringify(existing) === JSON.stringify(m)) return paths(out, m);
  return generateDemoData(options);
}
