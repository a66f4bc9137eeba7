import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { openSource } from '../../src/data/index.ts';
import { IMAGENET_NORMALIZATION, normalizeInPlace } from '../../src/data/normalization.ts';
import { createRng } from '../../src/rng.ts';
import { openSimulator, simulatorSpec, type SimulatorSource } from '../../src/data/simulator.ts';
import { simulateParticles } from '../../src/data/particles.ts';
import { tempDirs } from './helpers.ts';

const newDir = tempDirs('ort-dann-sim-');
const repo = fileURLToPath(new URL('../../', import.meta.url));

async function take(src: SimulatorSource, sizes: number[]): Promise<{ images: number[]; labels: number[]; ids: string[] }> {
  const out = { images: [] as number[], labels: [] as number[], ids: [] as string[] };
  for (const n of sizes) {
    const b = await src.nextBatch(n);
    assert.equal(b.count, n);
    out.images.push(...b.images);
    out.labels.push(...b.labels!);
    out.ids.push(...b.ids!);
  }
  await src.close();
  return out;
}

test('particles: identical samples for 0, 1 and 2 workers and any batch split', async () => {
  const opts = { size: 16, seed: 42 };
  const inline = await take(await openSimulator(simulatorSpec('particles'), { ...opts, workers: 0 }), [5, 5, 5]);
  const one = await take(await openSimulator(simulatorSpec('particles'), { ...opts, workers: 1 }), [15]);
  const two = await take(await openSimulator(simulatorSpec('particles'), { ...opts, workers: 2 }), [3, 7, 5]);
  assert.deepEqual(one, inline);
  assert.deepEqual(two, inline);
  assert.deepEqual(inline.ids, Array.from({ length: 15 }, (_, i) => `sim:${i}`));
  // Sample 7 is the documented stream, gray replicated to 3 channels.
  const ref = simulateParticles(createRng(42).fork('source-train').at(7), 16);
  const plane = 256;
  for (let c = 0; c < 3; c++) assert.deepEqual(inline.images.slice((7 * 3 + c) * plane, (7 * 3 + c + 1) * plane), [...ref.image]);
  assert.deepEqual(inline.labels.slice(21, 24), [...ref.labels].map(Math.fround));
  const other = await take(await openSimulator(simulatorSpec('particles'), { ...opts, seed: 43, workers: 0 }), [15]);
  assert.notDeepEqual(other.images, inline.images);
});

test('a finite set repeats samples 0..length-1 and restarts at each epoch', async () => {
  const src = await openSimulator(simulatorSpec('particles'), { size: 8, seed: 1, length: 4, workers: 0, stream: 'source-val' });
  assert.equal(src.length, 4);
  assert.deepEqual((await src.nextBatch(3)).ids, ['sim:0', 'sim:1', 'sim:2']);
  src.startEpoch(1);
  assert.deepEqual((await src.nextBatch(3)).ids, ['sim:0', 'sim:1', 'sim:2']);
  assert.deepEqual((await src.nextBatch(3)).ids, ['sim:3', 'sim:0', 'sim:1']);
  await src.close();
  const endless = await openSimulator(simulatorSpec('particles'), { size: 8, seed: 1, workers: 0 });
  await endless.nextBatch(2);
  endless.startEpoch(1);
  assert.deepEqual((await endless.nextBatch(2)).ids, ['sim:2', 'sim:3']);
  endless.seek(100);
  assert.deepEqual((await endless.nextBatch(1)).ids, ['sim:100']);
  await endless.close();
});

test('normalization is applied to simulator batches', async () => {
  const plain = await openSimulator(simulatorSpec('particles'), { size: 8, seed: 5, workers: 0 });
  const norm = await openSimulator(simulatorSpec('particles'), { size: 8, seed: 5, workers: 1, normalization: IMAGENET_NORMALIZATION });
  const a = (await plain.nextBatch(2)).images;
  normalizeInPlace(a, 8, IMAGENET_NORMALIZATION, 0, 2);
  const b = (await norm.nextBatch(2)).images;
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) < 1e-6);
  await Promise.all([plain.close(), norm.close()]);
});

function writeModule(body: string, name = 'sim.mjs'): string {
  const path = join(newDir(), name);
  writeFileSync(path, body);
  return path;
}

const GOOD = `
export const outputNames = ['mean', 'index'];
export async function generate({ rng, size, index }) {
  const image = new Float32Array(size * size);
  for (let i = 0; i < image.length; i++) image[i] = rng.next();
  return { image, target: [image.reduce((a, b) => a + b, 0) / image.length, index] };
}`;

test('user module: generate() drives the source, the same in a worker as inline', async () => {
  const path = writeModule(GOOD);
  const inline = await openSource(path, { size: 4, seed: 9, workers: 0 });
  assert.deepEqual(inline.outputNames, ['mean', 'index']);
  const a = await inline.nextBatch(3);
  const worker = await openSource(path, { size: 4, seed: 9, workers: 1 });
  const b = await worker.nextBatch(3);
  assert.deepEqual(b, a);
  assert.deepEqual([...a.labels!.filter((_, i) => i % 2 === 1)], [0, 1, 2]);
  // gray is replicated to three channels and the target mean matches the pixels
  assert.deepEqual(a.images.subarray(0, 16), a.images.subarray(16, 32));
  assert.ok(Math.abs(a.images.subarray(0, 16).reduce((x, y) => x + y, 0) / 16 - a.labels![0]) < 1e-6);
  await Promise.all([inline.close(), worker.close()]);
});

test('user module: every accepted image form', async () => {
  const dir = newDir();
  const png = join(dir, 'tile.png');
  await sharp(Uint8Array.from({ length: 48 }, (_, i) => i * 5), { raw: { width: 4, height: 4, channels: 3 } }).png().toFile(png);
  const forms = {
    chw: 'Float32Array.from({ length: 3 * size * size }, (_, i) => i / 48)',
    f64: 'new Float64Array(size * size).fill(0.25)',
    array: 'Array.from({ length: size * size }, () => 0.5)',
    u8: 'new Uint8Array(size * size).fill(51)',
    u16: 'new Uint16Array(3 * size * size).fill(13107)',
    buffer: `(await import('node:fs')).readFileSync(${JSON.stringify(png)})`,
    path: JSON.stringify(png),
  };
  const firsts: Record<string, number[]> = {};
  for (const [name, expr] of Object.entries(forms)) {
    const path = writeModule(`export async function generate({ size }) { return { image: ${expr}, target: 1 }; }`, `${name}.mjs`);
    const src = await openSource(path, { size: 4, seed: 0, workers: 0 });
    assert.deepEqual(src.outputNames, ['output_0']);
    const b = await src.nextBatch(1);
    firsts[name] = [b.images[0], b.images[16], b.images[47]];
    await src.close();
  }
  const f = Math.fround;
  assert.deepEqual(firsts.chw, [0, f(16 / 48), f(47 / 48)]);
  assert.deepEqual(firsts.f64, [0.25, 0.25, 0.25]);
  assert.deepEqual(firsts.array, [0.5, 0.5, 0.5]);
  assert.deepEqual(firsts.u8, [0.2, 0.2, 0.2].map(f));
  assert.deepEqual(firsts.u16, [0.2, 0.2, 0.2].map(f));
  // the PNG is 4x4 RGB, HWC: channel 1 of pixel 0 is byte 1, channel 2 of pixel 15 is byte 47
  assert.deepEqual(firsts.buffer, [0, f(5 / 255), f(235 / 255)]);
  assert.deepEqual(firsts.path, firsts.buffer);
});

test('user module errors name the module and sample, before training starts', async () => {
  const cases: [string, RegExp][] = [
    ['export const x = 1;', /sim\.mjs: exports no generate function; add `export async function generate/],
    ['export function generate( {', /sim\.mjs: failed to load the module \(.*\); fix it/],
    ['export function generate() { throw new Error("boom"); }', /sim\.mjs: generate\(\) threw for sample 0: boom/],
    ['export function generate() { return 5; }', /sim\.mjs: sample 0: generate\(\) returned number; return an object \{ image, target \}/],
    ['export function generate({ size }) { return { image: new Float32Array(7), target: 1 }; }', /sim\.mjs: sample 0: image has 7 values; expected 16 \(4x4 gray\) or 48 \(3x4x4 CHW\) for size 4/],
    ['export function generate({ size }) { return { image: new Int32Array(16), target: 1 }; }', /sim\.mjs: sample 0: image is Int32Array; return a Float32Array/],
    ['export function generate({ size }) { const a = new Float32Array(16); a[3] = NaN; return { image: a, target: 1 }; }', /sim\.mjs: sample 0: image value 3 is NaN; every pixel must be a finite number/],
    ['export function generate({ size }) { return { image: new Float32Array(16), target: [1, Infinity] }; }', /sim\.mjs: sample 0: target\[1\] is Infinity; every target must be a finite number/],
    ['export function generate({ size }) { return { image: new Float32Array(16), target: "3" }; }', /sim\.mjs: sample 0: target is string; return a number or an array of numbers/],
    ['export const outputNames = ["a"]; export function generate({ size }) { return { image: new Float32Array(16), target: [1, 2] }; }', /sim\.mjs: sample 0: target has 2 values but outputNames has 1 names/],
    ['export const outputNames = "a"; export function generate() {}', /sim\.mjs: outputNames must be a non-empty array/],
    ['export function generate() { return { image: "/nonexistent/x.png", target: 1 }; }', /sim\.mjs: sample 0: image file \/nonexistent\/x\.png: file not found/],
  ];
  for (const [i, [body, re]] of cases.entries()) {
    const path = writeModule(body);
    // Worker threads start in ~0.3 s each, so only some cases also run there; the code path is the same.
    for (const workers of i < 4 ? [0, 1] : [0]) {
      await assert.rejects(openSource(path, { size: 4, seed: 0, workers }), (e: Error) => {
        assert.equal(e.name, 'UserError', e.stack);
        assert.ok(!e.message.includes('\n'), e.message);
        assert.match(e.message, re);
        return true;
      });
    }
  }
});

test('user module: a worker that dies is reported against the module', async () => {
  const path = writeModule('export function generate() { process.exit(3); }');
  await assert.rejects(openSource(path, { size: 4, seed: 0, workers: 1 }), /^UserError: .*sim\.mjs: the simulator worker exited with code 3; fix the module$/);
});

test('user module: a later bad sample fails the batch with its index', async () => {
  const path = writeModule('export function generate({ size, index }) { return { image: new Float32Array(size * size), target: index === 5 ? [1, 2] : [1] }; }');
  const src = await openSource(path, { size: 4, seed: 0, workers: 1 });
  await assert.rejects(src.nextBatch(8), /sim\.mjs: sample 5: target has 2 values but earlier samples had 1/);
  await src.close();
});

test('--source values that are neither particles, a folder nor a module are refused clearly', async () => {
  await assert.rejects(openSource('partikles', { size: 4, seed: 0 }), /^UserError: --source partikles: not 'particles', a folder, or a simulator module/);
  await assert.rejects(openSource('./missing-sim.mjs', { size: 4, seed: 0 }), /--source \.\/missing-sim\.mjs: file not found/);
});

test('workers start when tsx is registered by API only, as bin/ort-dann.js does', () => {
  const dir = newDir();
  const script = join(dir, 'run.mjs');
  const api = pathToFileURL(join(repo, 'node_modules/tsx/dist/esm/api/index.mjs')).href;
  const data = pathToFileURL(join(repo, 'src/data/index.ts')).href;
  writeFileSync(script, `import { register } from ${JSON.stringify(api)};
register();
const { openSource } = await import(${JSON.stringify(data)});
const src = await openSource('particles', { size: 8, seed: 1, workers: 1 });
const b = await src.nextBatch(2);
await src.close();
console.log(b.ids.join(','), b.images.length);`);
  const out = execFileSync(process.execPath, [script], { cwd: dir, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  assert.equal(out.trim(), 'sim:0,sim:1 384');
});

test('the next batches are rendered while the current one is consumed', async () => {
  const path = writeModule(`globalThis.__calls = [];
export function generate({ size, index }) { globalThis.__calls.push(index); return { image: new Float32Array(size * size), target: index }; }`);
  const src = await openSource(path, { size: 4, seed: 0, workers: 0, prefetchBatches: 2 });
  const calls = (globalThis as { __calls?: number[] }).__calls!;
  calls.length = 0;
  await src.nextBatch(3);
  await new Promise((r) => setTimeout(r, 20));
  // Batch 0..2 was served; 3..8 (two batches) were requested before anyone asked for them.
  assert.deepEqual([...new Set(calls)].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  await src.close();
});
