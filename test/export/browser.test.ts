/**
 * The browser example in Debian's headless Chromium (driven by playwright-core, no browser
 * download): an image chosen in the page goes through the page's canvas preprocessing and
 * onnxruntime-web, and the outputs equal onnxruntime-node's on the same input.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { startServer } from '../../examples/browser/serve.mjs';
import { loadImageTensor } from '../../src/data/decode.ts';
import { IMAGENET_NORMALIZATION } from '../../src/data/normalization.ts';
import { writePng } from '../data/helpers.ts';
import { tempDirs } from '../io/tmp.ts';
import { exportFixture, makeFixture, relErr, runOrt } from './fixture.ts';

const CHROMIUM = '/usr/bin/chromium';
const temp = tempDirs('ort-dann-browser-');
let dir: string;
let model: string;
let server: Awaited<ReturnType<typeof startServer>>;
let browser: Browser;
let page: Page;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (.ci/run does)`);
  dir = temp();
  const fx = await makeFixture(join(dir, 'artifacts'));
  model = join(dir, 'model.onnx');
  await exportFixture(fx, model, { normalization: IMAGENET_NORMALIZATION, withDomain: true });
  server = await startServer({ model, port: 0 });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(server.url);
  await page.evaluate(() => (window as unknown as { ortDann: { ready: Promise<void> } }).ortDann.ready);
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** Chooses `file` in the page and returns the input tensor it built and the outputs it shows. */
async function predictInPage(file: string): Promise<{ input: Float32Array; outputs: Record<string, number[]> }> {
  await page.evaluate(() => { delete document.getElementById('outputs')!.dataset.outputs; });
  await page.setInputFiles('#file', file);
  await page.waitForFunction(() => document.getElementById('outputs')!.dataset.outputs, undefined, { timeout: 60_000 });
  const { input, outputs } = await page.evaluate(() => ({
    input: Array.from((window as unknown as { ortDann: { lastInput: Float32Array } }).ortDann.lastInput),
    outputs: JSON.parse(document.getElementById('outputs')!.dataset.outputs!) as Record<string, number[]>,
  }));
  return { input: Float32Array.from(input), outputs };
}

async function nodeOutputs(input: Float32Array): Promise<Record<string, Float32Array>> {
  return runOrt(model, { images: new ort.Tensor('float32', input, [1, 3, 128, 128]) });
}

test('page reads the model metadata and predicts like onnxruntime-node on the same input', async () => {
  const status = await page.textContent('#status');
  assert.match(status ?? '', /regression of num_particles, planar_dist, depth_dist at 128 px, normalization imagenet/);
  // An image already at the model's size: the canvas copies pixels, so the input is exactly ort-dann's.
  const png = await writePng(join(dir, 'img'), 'exact.png', 128, 128, 9);
  const { input, outputs } = await predictInPage(png);
  const want = await loadImageTensor(png, 128, IMAGENET_NORMALIZATION);
  assert.deepEqual(input, want, 'same preprocessing as predict');
  const native = await nodeOutputs(input);
  for (const name of ['prediction', 'features', 'domain_logit']) {
    const err = relErr(outputs[name], native[name]);
    assert.ok(err < 1e-5, `${name}: browser vs node relative error ${err.toExponential(2)}`);
  }
  const rows = await page.$$eval('#outputs tr', (trs) => trs.map((tr) => tr.textContent));
  assert.equal(rows.length, 4, 'three outputs and domain_logit shown');
});

test('a larger image is resized on the canvas and still predicted like onnxruntime-node', async () => {
  // A smooth gradient, so the browser's resampling and libvips' agree closely.
  const W = 300;
  const H = 200;
  const px = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) px.set([Math.round((255 * x) / W), Math.round((255 * y) / H), 128], 3 * (y * W + x));
  const file = join(dir, 'img', 'gradient.png');
  await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toFile(file);
  const { input, outputs } = await predictInPage(file);
  const want = await loadImageTensor(file, 128, IMAGENET_NORMALIZATION);
  let meanAbs = 0;
  for (let i = 0; i < want.length; i++) meanAbs += Math.abs(input[i] - want[i]) / want.length;
  // 0.05 in normalized units is about 3 levels of 255.
  assert.ok(meanAbs < 0.05, `canvas resize vs libvips: mean |Δ| ${meanAbs}`);
  const native = await nodeOutputs(input);
  assert.ok(relErr(outputs.prediction, native.prediction) < 1e-5);
  console.log(`# canvas vs libvips resize: mean |Δ| ${meanAbs.toExponential(2)} (normalized units)`);
});
