// Temp folders and small generated images for the data tests; everything lives under one root removed after the file's tests.
import { after } from 'node:test';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp, { type Sharp } from 'sharp';

export function tempDirs(prefix: string): () => string {
  const root = mkdtempSync(join(tmpdir(), prefix));
  after(() => rmSync(root, { recursive: true, force: true }));
  return () => mkdtempSync(join(root, 'd-'));
}

/** Deterministic 8-bit pixels, HWC. */
export function pattern8(width: number, height: number, channels: number, salt = 0): Uint8Array {
  const px = new Uint8Array(width * height * channels);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + salt * 11 + ((i * i) % 13)) % 256;
  return px;
}

/** Deterministic 16-bit pixels, HWC, including neighbours 1 apart (only 16-bit precision tells them apart). */
export function pattern16(width: number, height: number, channels: number): Uint16Array {
  const px = new Uint16Array(width * height * channels);
  for (let i = 0; i < px.length; i++) px[i] = (1000 + i + ((i * 7919) % 60000)) % 65536;
  return px;
}

type Channels = 1 | 2 | 3 | 4;

export function rawImage(pixels: Uint8Array | Uint16Array, width: number, height: number, channels: Channels): Sharp {
  const img = sharp(pixels, { raw: { width, height, channels } });
  if (pixels instanceof Uint16Array) return img.toColourspace(channels <= 2 ? 'grey16' : 'rgb16');
  return channels <= 2 ? img.toColourspace('b-w') : img;
}

/** A small valid PNG in `dir` (creating it), returning its path. */
export async function writePng(dir: string, name: string, width = 8, height = 8, salt = 0): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, name);
  await sharp(pattern8(width, height, 3, salt), { raw: { width, height, channels: 3 } }).png().toFile(path);
  return path;
}

/** Converts HWC pixels to the CHW float layout the loaders return (gray replicated, alpha dropped). */
export function toChw(pixels: ArrayLike<number>, size: number, channels: number, scale: number): Float32Array {
  const plane = size * size;
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) out[c * plane + i] = pixels[i * channels + (channels <= 2 ? 0 : c)] * scale;
  }
  return out;
}
