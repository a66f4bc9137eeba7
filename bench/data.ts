/**
 * Data-layer throughput: the particles simulator (render only, then delivered batches with 1 and 2
 * worker threads) and target-folder decode+resize, at 128 and 256 px, each compared with what a
 * training step consumes. Prints the numbers; asserts nothing.
 *   node --import tsx bench/data.ts [--json] [--step-images-per-s 40] [--seconds 2]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { generateDemoData } from '../src/data/demo.ts';
import { openImageFolder } from '../src/data/folder.ts';
import { simulateParticles } from '../src/data/particles.ts';
import { createRng } from '../src/rng.ts';
import { openSimulator } from '../src/data/simulator.ts';
import type { BatchSource } from '../src/training/types.ts';
import { type ArgSpec, parseArgs } from './lib/args.ts';

export interface DataBenchRow {
  name: string;
  size: number;
  imagesPerS: number;
  /** imagesPerS divided by the training step's consumption. */
  ratio: number;
}

export interface DataBenchResult {
  cpus: number;
  loadAverage: number;
  stepImagesPerS: number;
  rows: DataBenchRow[];
}

const BATCH = 32;

export const DATA_ARGS = {
  stepImagesPerS: { type: 'number', default: 40, min: 1e-9, help: 'images/s a training step consumes' },
  seconds: { type: 'number', default: 2, min: 1e-9, help: 'seconds per measurement' },
  json: { type: 'flag', help: 'print the result as JSON' },
} satisfies ArgSpec;

/** Images per second of batches from `source` over about `seconds`, after one warm-up batch. */
async function batchRate(source: BatchSource, seconds: number): Promise<number> {
  await source.nextBatch(BATCH);
  let images = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    images += (await source.nextBatch(BATCH)).count;
  }
  return (images / (performance.now() - t0)) * 1000;
}

export async function benchData(argv: string[]): Promise<DataBenchResult> {
  const { stepImagesPerS: step, seconds, json } = parseArgs('data', argv, DATA_ARGS);
  const rows: DataBenchRow[] = [];
  const add = (name: string, size: number, imagesPerS: number) => {
    rows.push({ name, size, imagesPerS, ratio: imagesPerS / step });
    if (!json) {
      console.log(`${name.padEnd(40)} ${String(size).padStart(4)} px ${imagesPerS.toFixed(0).padStart(7)} img/s  ${(imagesPerS / step).toFixed(1).padStart(7)}x step`);
    }
  };
  const result: DataBenchResult = { cpus: availableParallelism(), loadAverage: loadavg()[0], stepImagesPerS: step, rows };
  if (!json) {
    console.log(`data bench: ${result.cpus} CPUs, load average ${result.loadAverage.toFixed(2)}, step consumes ${step} img/s, batches of ${BATCH}`);
  }

  for (const size of [128, 256]) {
    const out = new Float32Array(size * size);
    const root = createRng(0).fork('bench');
    for (let i = 0; i < 50; i++) simulateParticles(root.at(i), size, undefined, out);
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < seconds * 1000) simulateParticles(root.at(n++), size, undefined, out);
    add('particles render, this thread (1 core)', size, (n / (performance.now() - t0)) * 1000);
    for (const workers of [1, 2]) {
      const sim = await openSimulator({ kind: 'particles' }, { size, seed: 0, workers });
      add(`particles batches, ${workers} worker${workers > 1 ? 's' : ''}`, size, await batchRate(sim, seconds));
      await sim.close();
    }
  }

  // Targets like a camera's: 64 distinct 512x512 8-bit gray PNGs from the demo's target optics.
  const dir = await mkdtemp(join(tmpdir(), 'ort-dann-bench-'));
  try {
    const demo = await generateDemoData({ out: join(dir, 'demo'), size: 512, train: 64, val: 1, sourceVal: 0 });
    for (const size of [128, 256]) {
      const uncached = await openImageFolder(demo.targetTrain, { size, seed: 0, cacheMegabytes: 0 });
      add('target 512px PNG decode+resize', size, await batchRate(uncached, seconds));
      await uncached.close();
      // Later epochs: every image already resized in memory, only float conversion remains.
      const cached = await openImageFolder(demo.targetTrain, { size, seed: 0 });
      await cached.nextBatch(64);
      add('target, later epochs (decode cache)', size, await batchRate(cached, seconds));
      await cached.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  if (json) console.log(JSON.stringify(result, null, 2));
  return result;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await benchData(process.argv.slice(2));
}
