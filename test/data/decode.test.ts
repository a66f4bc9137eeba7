import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';
import { decodeImage, loadImageTensor, readImageHeader } from '../../src/data/decode.ts';
import { IMAGENET_NORMALIZATION, NO_NORMALIZATION } from '../../src/data/normalization.ts';
import { pattern16, pattern8, rawImage, tempDirs, toChw } from './helpers.ts';

const newDir = tempDirs('ort-dann-decode-');
const S = 8;

function assertClose(actual: Float32Array, expected: Float32Array, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  assert.ok(worst <= tol, `${what}: max difference ${worst} > ${tol}`);
}

// Lossless cases decode at their own size (no resampling), so the expected floats are exact.
const lossless: { name: string; channels: 1 | 2 | 3 | 4; bits: 8 | 16; write: (img: Sharp) => Sharp }[] = [
  { name: 'png gray 8', channels: 1, bits: 8, write: (i) => i.png() },
  { name: 'png gray+alpha 8', channels: 2, bits: 8, write: (i) => i.png() },
  { name: 'png rgb 8', channels: 3, bits: 8, write: (i) => i.png() },
  { name: 'png rgba 8', channels: 4, bits: 8, write: (i) => i.png() },
  { name: 'png gray 16', channels: 1, bits: 16, write: (i) => i.png() },
  { name: 'png gray+alpha 16', channels: 2, bits: 16, write: (i) => i.png() },
  { name: 'png rgb 16', channels: 3, bits: 16, write: (i) => i.png() },
  { name: 'png rgba 16', channels: 4, bits: 16, write: (i) => i.png() },
  { name: 'webp lossless rgb', channels: 3, bits: 8, write: (i) => i.webp({ lossless: true }) },
  { name: 'webp lossless rgba', channels: 4, bits: 8, write: (i) => i.webp({ lossless: true, exact: true }) },
  { name: 'tiff gray 8', channels: 1, bits: 8, write: (i) => i.tiff({ compression: 'lzw' }) },
  { name: 'tiff rgb 8', channels: 3, bits: 8, write: (i) => i.tiff({ compression: 'lzw' }) },
  { name: 'tiff gray 16', channels: 1, bits: 16, write: (i) => i.tiff({ compression: 'none' }) },
  { name: 'tiff rgb 16', channels: 3, bits: 16, write: (i) => i.tiff({ compression: 'none' }) },
];

for (const c of lossless) {
  test(`decodes ${c.name} to 3-channel CHW floats exactly`, async () => {
    const pixels = c.bits === 8 ? pattern8(S, S, c.channels) : pattern16(S, S, c.channels);
    const path = join(newDir(), 'img');
    await c.write(rawImage(pixels, S, S, c.channels)).toFile(path);
    const header = await readImageHeader(path);
    assert.equal(header.bits, c.bits);
    assert.equal(header.hasAlpha, c.channels === 2 || c.channels === 4);
    const out = await decodeImage(path, S);
    assertClose(out, toChw(pixels, S, c.channels, 1 / (c.bits === 8 ? 255 : 65535)), 1e-7, c.name);
  });
}

test('16-bit images keep full 16-bit precision', async () => {
  const px = new Uint16Array(S * S).map((_, i) => 30000 + (i % 2)); // neighbours differ by one 16-bit step
  const path = join(newDir(), 'fine.png');
  await rawImage(px, S, S, 1).png().toFile(path);
  const out = await decodeImage(path, S);
  assert.ok(Math.abs(out[1] - out[0] - 1 / 65535) < 1e-9);
});

test('JPEG decodes like sharp decodes it (lossy, so compared with sharp itself)', async () => {
  for (const channels of [1, 3] as const) {
    const path = join(newDir(), `img-${channels}.jpg`);
    await rawImage(pattern8(16, 16, channels), 16, 16, channels).jpeg({ quality: 90 }).toFile(path);
    const { data } = await sharp(path).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    assertClose(await decodeImage(path, 16), toChw(data, 16, 3, 1 / 255), 1e-7, `jpeg ${channels}`);
  }
});

test('resizing equals sharp\'s own linear fill resize, for 8-bit, 16-bit and JPEG', async () => {
  const dir = newDir();
  const cases: [string, Sharp][] = [
    ['down.png', rawImage(pattern8(37, 23, 3), 37, 23, 3).png()],
    ['down16.png', rawImage(pattern16(40, 30, 1), 40, 30, 1).png()],
    ['up.png', rawImage(pattern8(5, 3, 3), 5, 3, 3).png()],
    ['big.jpg', rawImage(pattern8(300, 200, 3), 300, 200, 3).jpeg()],
  ];
  for (const [name, img] of cases) {
    const path = join(dir, name);
    await img.toFile(path);
    const sixteen = name.includes('16');
    const ref = await sharp(path)
      .resize(16, 16, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false })
      .toColourspace(sixteen ? 'rgb16' : 'srgb')
      .raw(sixteen ? { depth: 'ushort' } : {})
      .toBuffer();
    const refPx = sixteen ? new Uint16Array(ref.buffer, ref.byteOffset, ref.length / 2) : ref;
    assertClose(await decodeImage(path, 16), toChw(refPx, 16, 3, sixteen ? 1 / 65535 : 1 / 255), 1e-7, name);
  }
});

test('alpha is dropped before resizing: colour under transparent pixels is kept', async () => {
  const w = 6;
  const rgba = pattern8(w, w, 4);
  for (let i = 3; i < rgba.length; i += 4) rgba[i] = i % 8 === 3 ? 0 : 255; // every other pixel fully transparent
  const path = join(newDir(), 'alpha.png');
  await sharp(rgba, { raw: { width: w, height: w, channels: 4 } }).png().toFile(path);
  const rgb = new Uint8Array(w * w * 3);
  for (let i = 0; i < w * w; i++) rgb.set(rgba.subarray(4 * i, 4 * i + 3), 3 * i);
  const ref = await sharp(rgb, { raw: { width: w, height: w, channels: 3 } }).resize(4, 4, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
  assertClose(await decodeImage(path, 4), toChw(ref, 4, 3, 1 / 255), 1e-7, 'rgba resized');
  assertClose(await decodeImage(path, w), toChw(rgb, w, 3, 1 / 255), 1e-7, 'rgba same size');
});

test('a 1x1 image upsamples to a constant image', async () => {
  const path = join(newDir(), 'one.png');
  await sharp(Uint8Array.from([10, 128, 250]), { raw: { width: 1, height: 1, channels: 3 } }).png().toFile(path);
  const out = await decodeImage(path, 32);
  const plane = 32 * 32;
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) assert.equal(out[c * plane + i], Math.fround([10, 128, 250][c] / 255));
});

test('loadImageTensor applies the recorded normalization', async () => {
  const path = join(newDir(), 'n.png');
  await rawImage(pattern8(S, S, 3), S, S, 3).png().toFile(path);
  const plain = await loadImageTensor(path, S, NO_NORMALIZATION);
  const norm = await loadImageTensor(path, S, IMAGENET_NORMALIZATION);
  const { mean, std } = IMAGENET_NORMALIZATION as { mean: number[]; std: number[] };
  for (let c = 0; c < 3; c++) {
    const i = c * S * S + 5;
    assert.ok(Math.abs(norm[i] - (plain[i] - mean[c]) / std[c]) < 1e-6);
  }
  assert.deepEqual(await loadImageTensor(await sharp(path).png().toBuffer(), S, NO_NORMALIZATION), plain);
});

test('bad single images give one-line errors naming the file', async () => {
  const dir = newDir();
  const cases: [string, Buffer | string, RegExp][] = [
    ['empty.png', Buffer.alloc(0), /empty\.png: empty file \(0 bytes\)/],
    ['text.png', Buffer.from('not an image'), /text\.png: not an image format sharp can read/],
    ['float.tif', '', /float\.tif: float samples are not supported; save it as an 8- or 16-bit image/],
  ];
  const float = sharp(new Float32Array(4).fill(0.5), { raw: { width: 2, height: 2, channels: 1 } }).toColourspace('b-w');
  await float.tiff({ compression: 'none', predictor: 'float' }).toFile(join(dir, 'float.tif'));
  for (const [name, content, re] of cases) {
    const path = join(dir, name);
    if (content !== '') writeFileSync(path, content);
    await assert.rejects(decodeImage(path, 8), (e: Error) => e.name === 'UserError' && re.test(e.message) && !e.message.includes('\n'));
  }
  await assert.rejects(decodeImage(join(dir, 'missing.png'), 8), /missing\.png: file not found/);
  const big = join(dir, 'big.png');
  await rawImage(pattern8(20, 20, 3), 20, 20, 3).png().toFile(big);
  await assert.rejects(decodeImage(big, 8, { maxInputPixels: 100 }), /big\.png: image has more than 100 pixels/);
});
