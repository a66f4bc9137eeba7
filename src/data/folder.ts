/**
 * Image folders: unlabelled target domains (optionally with a labels CSV for evaluation) and labelled
 * source folders (DIR/images + DIR/labels.csv).
 *
 * Layout: if DIR has an `images/` subfolder the images are read from there, otherwise from DIR itself
 * (not recursive). Every non-hidden file in that folder must be an image (see IMAGE_EXTENSIONS);
 * anything else is reported like an unreadable image, so a stray file never goes unnoticed.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import type { BatchSource, ImageBatch } from '../training/types.ts';
import { UserError } from '../errors.ts';
import { DEFAULT_MAX_INPUT_PIXELS, IMAGE_EXTENSIONS, decodeImage, decodeResized, isImageFileName, pixelsToChw, readImageHeader, type ImageHeader, type ResizedPixels } from './decode.ts';
import { readLabelsCsv, type LabelTable } from './labels.ts';
import { NO_NORMALIZATION, normalizeInPlace, type Normalization } from './normalization.ts';
import { createRng, type Rng, type Seed } from '../rng.ts';

export interface ScannedImage extends ImageHeader {
  /** Path as opened (image folder joined with name). */
  path: string;
  /** Name relative to the image folder, '/'-separated: the key of the labels CSV. */
  name: string;
}

export interface FolderScan {
  dir: string;
  imageDir: string;
  images: ScannedImage[];
  /** [images.length, outputNames.length] row-major, in `images` order (only with a labels CSV). */
  labels?: Float32Array;
  outputNames?: string[];
  /** Files left out under skipBadImages, with the reason. */
  skipped: { path: string; reason: string }[];
}

export interface ValidateOptions {
  /** CSV `filename,<outputs…>` whose rows must match the images one to one. */
  labelsCsv?: string;
  /** Leave unreadable files out (warning with a count) instead of failing. */
  skipBadImages?: boolean;
  maxInputPixels?: number;
  /** 'header' (default) reads headers only; 'full' also decodes every image, catching truncated files up front. */
  verify?: 'header' | 'full';
  /** How the folder is named in messages, e.g. '--target'. */
  label?: string;
  /** Decode size used by verify 'full' (any size proves the file decodes; the model size avoids surprises). */
  size?: number;
  /** Where warnings go; stderr by default. */
  warn?: (message: string) => void;
}

const IGNORED_FILES = new Set(['thumbs.db', 'desktop.ini']);
const SCAN_CONCURRENCY = 16;

function defaultWarn(message: string): void {
  process.stderr.write(`ort-dann: warning: ${message}\n`);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Throws a one-line UserError saying why `dir` is not a usable folder (missing, a file, a symlink loop, unreadable). */
async function requireFolder(dir: string, label: string): Promise<void> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${label}${dir}: folder not found; check the path`);
    if (code === 'ELOOP') throw new UserError(`${label}${dir}: a symbolic link loop (ELOOP); fix or remove the link`);
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`${label}${dir}: cannot be read (${code}); check its permissions`);
    if (code === 'ENOTDIR') throw new UserError(`${label}${dir}: a part of the path is a file, not a folder (ENOTDIR); check the path`);
    throw e;
  }
  if (!isDir) throw new UserError(`${label}${dir}: is a file, not a folder; give the folder that holds the images`);
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return out;
}

/**
 * Scans a folder before training: every file's header (and, with verify 'full', its pixels), plus the
 * labels CSV if given. Throws one UserError naming the first bad file (or CSV line) and the fix.
 */
export async function validateImageFolder(dir: string, options: ValidateOptions = {}): Promise<FolderScan> {
  const label = options.label ? `${options.label} ` : '';
  const warn = options.warn ?? defaultWarn;
  const maxInputPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  await requireFolder(dir, label);
  const imageDir = (await isDirectory(join(dir, 'images'))) ? join(dir, 'images') : dir;
  const csvPath = options.labelsCsv ? resolve(options.labelsCsv) : undefined;
  const entries = await readdir(imageDir, { withFileTypes: true });
  const candidates = entries
    .filter((e) => !e.isDirectory() && !e.name.startsWith('.') && !IGNORED_FILES.has(e.name.toLowerCase()))
    .filter((e) => resolve(imageDir, e.name) !== csvPath)
    .map((e) => e.name)
    .sort();
  if (candidates.length === 0) {
    throw new UserError(`${label}${imageDir}: no images found (readable: ${[...IMAGE_EXTENSIONS].join(' ')}); put images there or point at the right folder`);
  }
  const bad: { path: string; reason: string }[] = [];
  const scanned = await mapLimit(candidates, SCAN_CONCURRENCY, async (name): Promise<ScannedImage | undefined> => {
    const path = join(imageDir, name);
    try {
      if (!isImageFileName(name)) throw new UserError(`${path}: not an image file (unknown extension); move it out of the image folder`);
      const header = await readImageHeader(path, { maxInputPixels });
      if (options.verify === 'full') await decodeImage(path, options.size ?? 32, { maxInputPixels, header });
      return { ...header, path, name };
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      bad.push({ path, reason: e.message });
      return undefined;
    }
  });
  bad.sort((a, b) => (a.path < b.path ? -1 : 1));
  if (bad.length > 0 && !options.skipBadImages) {
    const more = bad.length > 1 ? ` (${bad.length - 1} more bad file${bad.length > 2 ? 's' : ''} in this folder)` : '';
    throw new UserError(`${bad[0].reason}; or pass --skip-bad-images to leave unreadable images out${more}`);
  }
  let images = scanned.filter((s): s is ScannedImage => s !== undefined);
  if (bad.length > 0) warn(`${label}${imageDir}: skipped ${bad.length} unreadable file${bad.length > 1 ? 's' : ''} (first: ${bad[0].reason})`);
  if (images.length === 0) throw new UserError(`${label}${imageDir}: none of the ${candidates.length} files is a readable image; fix or replace them`);
  const scan: FolderScan = { dir, imageDir, images, skipped: bad };
  if (options.labelsCsv) {
    const table = await readLabelsCsv(options.labelsCsv);
    images = matchLabels(scan, table, new Set(bad.map((b) => relative(imageDir, b.path).split('\\').join('/'))));
    scan.images = images;
    scan.outputNames = table.outputNames;
    const k = table.outputNames.length;
    const byName = new Map(table.rows.map((r) => [r.name, r]));
    scan.labels = new Float32Array(images.length * k);
    images.forEach((img, i) => scan.labels!.set(byName.get(img.name)!.values, i * k));
  }
  return scan;
}

/** Images and CSV rows must match one to one (skipped bad images drop their row, with the skip). */
function matchLabels(scan: FolderScan, table: LabelTable, skippedNames: Set<string>): ScannedImage[] {
  const byName = new Map(scan.images.map((img) => [img.name, img]));
  const listed = new Set<string>();
  const ordered: ScannedImage[] = [];
  for (const row of table.rows) {
    listed.add(row.name);
    if (skippedNames.has(row.name)) continue;
    const img = byName.get(row.name);
    if (!img) throw new UserError(`${table.file}:${row.line}: ${join(scan.imageDir, row.name)} not found; add the image or delete the row`);
    ordered.push(img);
  }
  const unlisted = scan.images.find((img) => !listed.has(img.name));
  if (unlisted) throw new UserError(`${unlisted.path}: no row in ${table.file}; add a row for it or move the image out`);
  return ordered;
}

export interface ImageFolderOptions extends Omit<ValidateOptions, 'size'> {
  /** Model input size: images are resized to size×size. */
  size: number;
  normalization?: Normalization;
  /** Seed of the epoch shuffles; default 0. */
  seed?: Seed;
  /** Stream name under the seed, so target-train and a source folder shuffle independently. */
  stream?: string;
  /** false keeps file order (validation sets); default true. */
  shuffle?: boolean;
  /** Batches decoded ahead of the one being consumed; default 2. */
  prefetchBatches?: number;
  /**
   * Memory for keeping resized images (3 bytes per pixel, 6 for 16-bit) so later epochs skip decoding;
   * default 512 MiB, 0 disables. Images beyond the budget are decoded every time they are served.
   */
  cacheMegabytes?: number;
}

/**
 * A folder as a BatchSource. Samples are served as one endless sequence per epoch: pass p of epoch e
 * is a permutation drawn from (seed, stream, e, p), so a batch that runs past the end continues with a
 * fresh shuffle (the seed's DANNCallback re-iterates its shuffled loader the same way) and a resumed
 * run sees the same order. Decoding of the next batches starts as soon as a batch is handed out.
 */
export class FolderSource implements BatchSource {
  readonly name: string;
  readonly labelled: boolean;
  readonly length: number;
  readonly outputNames?: string[];
  readonly scan: FolderScan;
  private readonly size: number;
  private readonly normalization: Normalization;
  private readonly shuffleRng: Rng | undefined;
  private readonly prefetchBatches: number;
  private readonly maxInputPixels: number;
  private readonly skipBad: boolean;
  private readonly warn: (message: string) => void;
  private readonly bad = new Set<number>();
  private readonly pending = new Map<number, Promise<ResizedPixels | null>>();
  private readonly cache = new Map<number, ResizedPixels>();
  private cacheBytesLeft: number;
  private readonly perms = new Map<number, Uint32Array>();
  private epoch = 0;
  private cursor = 0;
  private closed = false;

  constructor(scan: FolderScan, options: ImageFolderOptions) {
    this.scan = scan;
    this.name = options.label ?? scan.dir;
    this.labelled = scan.labels !== undefined;
    this.length = scan.images.length;
    this.outputNames = scan.outputNames;
    this.size = options.size;
    this.normalization = options.normalization ?? NO_NORMALIZATION;
    this.shuffleRng = options.shuffle === false ? undefined : createRng(options.seed ?? 0).fork(options.stream ?? `folder:${scan.dir}`);
    this.prefetchBatches = options.prefetchBatches ?? 2;
    this.maxInputPixels = options.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
    this.skipBad = Boolean(options.skipBadImages);
    this.warn = options.warn ?? defaultWarn;
    this.cacheBytesLeft = (options.cacheMegabytes ?? 512) * 2 ** 20;
  }

  /** Images left out so far: at the scan plus those that failed to decode later (skipBadImages). */
  get skippedCount(): number {
    return this.scan.skipped.length + this.bad.size;
  }

  /**
   * Restarts at a fresh shuffle for `epoch`. A trainer may call it every epoch (deterministic order per
   * epoch, resumable) or never (one endless stream of reshuffled passes, as the seed's target loader).
   */
  startEpoch(epoch: number): void {
    this.epoch = epoch;
    this.cursor = 0;
    this.pending.clear();
    this.perms.clear();
  }

  /** Samples served since the last startEpoch; with seek, a resumed run continues where it stopped. */
  get position(): number {
    return this.cursor;
  }

  seek(position: number): void {
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`seek: position must be a non-negative integer, got ${position}`);
    this.cursor = position;
    this.pending.clear();
  }

  /** Image index served at `position` of the current epoch. */
  private indexAt(position: number): number {
    const pass = Math.floor(position / this.length);
    const offset = position - pass * this.length;
    if (!this.shuffleRng) return offset;
    let perm = this.perms.get(pass);
    if (!perm) {
      perm = this.shuffleRng.at(this.epoch).at(pass).permutation(this.length);
      if (this.perms.size >= 8) this.perms.clear(); // permutations are cheap to redraw; keep memory bounded
      this.perms.set(pass, perm);
    }
    return perm[offset];
  }

  private request(position: number): Promise<ResizedPixels | null> {
    let p = this.pending.get(position);
    if (!p) {
      const index = this.indexAt(position);
      const image = this.scan.images[index];
      const cached = this.cache.get(index);
      p = cached
        ? Promise.resolve(cached)
        : this.bad.has(index)
          ? Promise.resolve(null)
          : decodeResized(image.path, this.size, { maxInputPixels: this.maxInputPixels, header: image }).then(
              (pixels) => {
                if (!this.cache.has(index) && pixels.data.byteLength <= this.cacheBytesLeft) {
                  this.cache.set(index, pixels);
                  this.cacheBytesLeft -= pixels.data.byteLength;
                }
                return pixels;
              },
              (e: unknown) => {
                if (!(e instanceof UserError) || !this.skipBad) {
                  throw e instanceof UserError ? new UserError(`${e.message}; or pass --skip-bad-images to leave unreadable images out`) : e;
                }
                if (!this.bad.has(index)) {
                  this.bad.add(index);
                  this.warn(`${this.name}: skipping unreadable image (${this.skippedCount} skipped so far): ${e.message}`);
                }
                return null;
              },
            );
      // Marks a prefetched failure as handled; whoever awaits it still gets the error.
      p.catch(() => undefined);
      this.pending.set(position, p);
    }
    return p;
  }

  private prefetch(from: number, count: number): void {
    for (let pos = from; pos < from + count; pos++) this.request(pos);
  }

  async nextBatch(count: number): Promise<ImageBatch> {
    if (this.closed) throw new Error(`${this.name}: nextBatch after close`);
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`nextBatch: count must be a positive integer, got ${count}`);
    const plane = 3 * this.size * this.size;
    const k = this.outputNames?.length ?? 0;
    const images = new Float32Array(count * plane);
    const labels = this.labelled ? new Float32Array(count * k) : undefined;
    const ids: string[] = [];
    this.prefetch(this.cursor, count * (1 + this.prefetchBatches));
    let filled = 0;
    while (filled < count) {
      if (this.bad.size >= this.length) throw new UserError(`${this.name}: every image failed to decode; fix or replace them`);
      const position = this.cursor++;
      const index = this.indexAt(position);
      const pixels = await this.request(position);
      this.pending.delete(position);
      if (pixels === null) continue;
      pixelsToChw(pixels, images, filled * plane);
      if (labels) labels.set(this.scan.labels!.subarray(index * k, (index + 1) * k), filled * k);
      ids.push(this.scan.images[index].path);
      filled++;
    }
    this.prefetch(this.cursor, count * this.prefetchBatches);
    normalizeInPlace(images, this.size, this.normalization, 0, count);
    return { images, count, size: this.size, labels, ids };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pending.clear();
    this.cache.clear();
  }
}

/**
 * Opens an image folder (a target domain, or any folder of images) as a BatchSource after validating
 * it up front. With `labelsCsv` the batches carry labels (for evaluation of a target domain).
 */
export async function openImageFolder(dir: string, options: ImageFolderOptions): Promise<FolderSource> {
  const scan = await validateImageFolder(dir, { ...options, size: options.size });
  return new FolderSource(scan, options);
}

/** Opens a labelled source folder: DIR/images/* with DIR/labels.csv (`filename,<output names…>`). */
export async function openLabelledFolder(dir: string, options: Omit<ImageFolderOptions, 'labelsCsv'>): Promise<FolderSource> {
  const label = options.label ? `${options.label} ` : '';
  await requireFolder(dir, label);
  const csv = join(dir, 'labels.csv');
  if (!(await stat(csv).then((s) => s.isFile(), () => false))) {
    throw new UserError(`${label}${dir}: no labels.csv; a labelled folder needs images/ and labels.csv with "filename,<output names…>"`);
  }
  return openImageFolder(dir, { ...options, labelsCsv: csv });
}
