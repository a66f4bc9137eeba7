/**
 * Image decoding shared by target folders, labelled source folders, user simulators and predict.
 *
 * Every image becomes 3-channel float CHW in [0, 1] at size×size:
 * - Decoding and resizing are libvips via sharp. Resize stretches to size×size (fit 'fill', aspect
 *   ratio not kept), exactly like torchvision's `Resize((size, size))`, with the `linear` kernel: a
 *   triangle filter widened by the shrink factor when downscaling, the closest libvips analogue of PIL's
 *   antialiased bilinear. Measured against Pillow 12 BILINEAR on 8-bit images: downscaling agrees within
 *   a mean of 0.2–1 levels (max 6 of 255); enlarging differs more (mean 3–8 levels, max ~40) because
 *   libvips and PIL place the sample points differently when upsampling. Training, export and predict
 *   all use this same function, so the model always sees one consistent preprocessing.
 *   JPEG/WebP shrink-on-load is disabled so the result does not depend on the decoder's DCT-domain
 *   shortcut. Any size works, 1×1 included (upsampled).
 * - 8-bit images are resized in 8 bits and divided by 255 (as PIL + ToTensor do); 16-bit images stay
 *   16-bit through the resize and are divided by 65535, keeping full precision. Other sample formats
 *   (float or 32-bit TIFF) are refused: there is no single right mapping of them to [0, 1].
 * - Gray is replicated to RGB; other colour spaces (CMYK, embedded ICC) are converted to sRGB.
 * - Alpha is discarded before resizing: colour values are kept as stored and alpha is ignored, as
 *   PIL's `convert('RGB')` in the seed does (no compositing onto a background).
 * - EXIF orientation is not applied, again like PIL's `Image.open`.
 * - Multi-page files (TIFF, GIF) use their first page.
 */
import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import sharp, { type Metadata, type OutputInfo, type ResizeOptions, type Sharp } from 'sharp';
import { UserError } from '../errors.ts';
import { normalizeInPlace, type Normalization } from './normalization.ts';

/** libvips' default pixel limit (0x3FFF²): bigger images are refused unless the caller raises it. */
export const DEFAULT_MAX_INPUT_PIXELS = 268402689;

const EXTENSIONS_BY_FORMAT: Record<string, string[]> = {
  png: ['.png'],
  jpeg: ['.jpg', '.jpeg', '.jpe', '.jfif'],
  webp: ['.webp'],
  tiff: ['.tif', '.tiff'],
  gif: ['.gif'],
  heif: ['.avif', '.heic', '.heif'],
  svg: ['.svg'],
};

/** File extensions (lower case, with dot) of the formats this sharp build can read from files. */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(
  Object.entries(EXTENSIONS_BY_FORMAT).flatMap(([format, exts]) =>
    (sharp.format as unknown as Record<string, { input?: { file?: boolean } }>)[format]?.input?.file ? exts : []),
);

export function isImageFileName(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

/** What a header read tells the decoder; a folder scan keeps it so decoding needs no second header read. */
export interface ImageHeader {
  width: number;
  height: number;
  bits: 8 | 16;
  hasAlpha: boolean;
}

function describe(input: string | Buffer, label?: string): string {
  return label ?? (typeof input === 'string' ? input : 'image buffer');
}

function firstLine(message: string): string {
  const line = message.split('\n').map((s) => s.trim()).find((s) => s.length > 0) ?? 'unknown error';
  return line.replace(/:\s*$/, '');
}

/** Turns a sharp/libvips failure into a one-line UserError naming the file and the fix. */
export function imageError(what: string, e: unknown, maxInputPixels: number): UserError {
  if (e instanceof UserError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  if (/exceeds pixel limit/i.test(msg)) {
    return new UserError(`${what}: image has more than ${maxInputPixels} pixels (libvips' input limit); shrink it or remove it`);
  }
  if (/unsupported image format/i.test(msg)) {
    return new UserError(`${what}: not an image format sharp can read; convert it to PNG or remove it`);
  }
  if (/Input (file|buffer) is (missing|empty)/i.test(msg)) {
    return new UserError(`${what}: ${firstLine(msg).replace(/^Input file is missing:.*/, 'file not found')}; check the path`);
  }
  return new UserError(`${what}: cannot decode image (${firstLine(msg)}); it is truncated or corrupt: re-export it or remove it`);
}

/** Reads only the header. Throws a UserError for empty, non-image, corrupt-header, too-large or unsupported-depth files. */
export async function readImageHeader(input: string | Buffer, options: { maxInputPixels?: number; label?: string } = {}): Promise<ImageHeader> {
  const limit = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const what = describe(input, options.label);
  if (typeof input === 'string') {
    let size: number;
    try {
      const s = await stat(input);
      if (!s.isFile()) throw new UserError(`${what}: not a regular file; remove it from the image folder`);
      size = s.size;
    } catch (e) {
      if (e instanceof UserError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new UserError(`${what}: a symbolic link loop (ELOOP); fix or remove the link`);
      if (code === 'EACCES' || code === 'EPERM') throw new UserError(`${what}: cannot be read (${code}); check its permissions`);
      throw new UserError(`${what}: file not found; check the path`);
    }
    if (size === 0) throw new UserError(`${what}: empty file (0 bytes); re-export it or remove it`);
  } else if (input.length === 0) {
    throw new UserError(`${what}: empty buffer (0 bytes); pass an encoded image`);
  }
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: limit }).metadata();
  } catch (e) {
    throw imageError(what, e, limit);
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (!(width > 0 && height > 0)) throw new UserError(`${what}: image reports no size; re-export it or remove it`);
  if (width * height > limit) throw imageError(what, new Error('exceeds pixel limit'), limit);
  let bits: 8 | 16;
  if (meta.depth === 'uchar') bits = 8;
  else if (meta.depth === 'ushort') bits = 16;
  else throw new UserError(`${what}: ${meta.depth} samples are not supported; save it as an 8- or 16-bit image`);
  return { width, height, bits, hasAlpha: Boolean(meta.hasAlpha) };
}

/** A view of 16-bit samples (copied only if the buffer is not 2-byte aligned, which a typed view needs). */
function asUint16(b: Buffer): Uint16Array {
  if (b.byteOffset % 2 === 0) return new Uint16Array(b.buffer, b.byteOffset, b.length >> 1);
  return new Uint16Array(Uint8Array.prototype.slice.call(b).buffer);
}

const RESIZE: ResizeOptions = { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false };

/** Resized pixels before float conversion: HWC, 3 channels, 8 or 16 bits; compact enough to cache. */
export interface ResizedPixels {
  data: Uint8Array | Uint16Array;
  size: number;
}

/**
 * Decodes and resizes one image to size×size RGB (see the module comment for the exact conversion).
 * Pass `header` from a previous readImageHeader to skip the header read.
 */
export async function decodeResized(
  input: string | Buffer,
  size: number,
  options: { maxInputPixels?: number; label?: string; header?: ImageHeader } = {},
): Promise<ResizedPixels> {
  const limit = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const what = describe(input, options.label);
  const header = options.header ?? (await readImageHeader(input, options));
  const sixteen = header.bits === 16;
  const colourspace = sixteen ? 'rgb16' : 'srgb';
  const rawOut = sixteen ? { depth: 'ushort' as const } : {};
  let data: Buffer;
  let info: OutputInfo;
  try {
    let pipeline: Sharp;
    if (header.hasAlpha) {
      // sharp removes alpha only after resizing (and resizes alpha-premultiplied), so drop it in a first pass.
      const full = await sharp(input, { limitInputPixels: limit }).removeAlpha().toColourspace(colourspace).raw(rawOut).toBuffer({ resolveWithObject: true });
      const raw = { width: full.info.width, height: full.info.height, channels: 3 as const };
      const pixels = sixteen ? asUint16(full.data) : full.data;
      pipeline = sharp(pixels, { raw, limitInputPixels: limit }).resize(size, size, RESIZE);
    } else {
      pipeline = sharp(input, { limitInputPixels: limit }).resize(size, size, RESIZE);
    }
    ({ data, info } = await pipeline.toColourspace(colourspace).raw(rawOut).toBuffer({ resolveWithObject: true }));
  } catch (e) {
    throw imageError(what, e, limit);
  }
  if (info.channels !== 3 || info.width !== size || info.height !== size) {
    throw new Error(`${what}: sharp returned ${info.width}x${info.height}x${info.channels}, expected ${size}x${size}x3`);
  }
  return { data: sixteen ? asUint16(data) : data, size };
}

/** Writes resized pixels as float CHW in [0, 1] into `out` at `offset` (8-bit / 255, 16-bit / 65535). */
export function pixelsToChw(pixels: ResizedPixels, out: Float32Array = new Float32Array(3 * pixels.size * pixels.size), offset = 0): Float32Array {
  const plane = pixels.size * pixels.size;
  const px = pixels.data;
  const k = px instanceof Uint16Array ? 1 / 65535 : 1 / 255;
  const r = offset;
  const g = offset + plane;
  const b = offset + 2 * plane;
  for (let i = 0; i < plane; i++) {
    out[r + i] = px[3 * i] * k;
    out[g + i] = px[3 * i + 1] * k;
    out[b + i] = px[3 * i + 2] * k;
  }
  return out;
}

/** Decodes one image to float CHW [3, size, size] in [0, 1]. */
export async function decodeImage(
  input: string | Buffer,
  size: number,
  options: { maxInputPixels?: number; label?: string; header?: ImageHeader } = {},
): Promise<Float32Array> {
  return pixelsToChw(await decodeResized(input, size, options));
}

/**
 * The single-image preprocessing of predict: decode, resize and normalise exactly as training did.
 * Returns float CHW [3, size, size].
 */
export async function loadImageTensor(path: string | Buffer, size: number, normalization: Normalization, options: { maxInputPixels?: number } = {}): Promise<Float32Array> {
  const image = await decodeImage(path, size, options);
  normalizeInPlace(image, size, normalization);
  return image;
}
