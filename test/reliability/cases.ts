/**
 * The bad-input catalogue: one row per mistake a user can make, the command that makes it, and the
 * message ort-dann must answer with. Arguments and messages use placeholders for the fixture's paths
 * (see PLACEHOLDERS in run-cases.ts), so the same text is asserted here and written to docs/errors.md.
 *
 * Every case starts from a working command (train: a one-step run on the fixture; predict: the previous
 * run's model on the demo images; build-artifacts: a 128 px ResNet18) and changes one thing.
 */
import { copyFileSync, cpSync, linkSync, symlinkSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { hostname } from 'node:os';
import { encodeSafetensors, readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';

export type Area = 'artifacts' | 'data' | 'flags' | 'config files' | 'predict' | 'W&B' | 'outputs' | 'run directory' | 'diverging runs' | 'user code' | 'file system';
export const AREAS: Area[] = ['artifacts', 'data', 'flags', 'config files', 'predict', 'W&B', 'outputs', 'run directory', 'diverging runs', 'user code', 'file system'];

/** Real paths of the case's folders, for setup. */
export interface CaseDirs {
  /** `<case>`: an empty folder for this case's inputs. */
  input: string;
  artifacts: string;
  demo: string;
  prevRun: string;
  /** `<run>`: the case's run directory (not created). */
  run: string;
}

export interface Case {
  id: string;
  area: Area;
  /** What the user did, as docs/errors.md names it. */
  title: string;
  command: 'train' | 'predict' | 'build-artifacts' | 'export' | 'evaluate' | 'demo-data';
  /** Flags of the working command to leave out. */
  drop?: string[];
  /** Appended to the working command (a repeated flag replaces the working value: the last one wins). */
  args: string[];
  env?: Record<string, string>;
  /** CODE:PATH: writes under PATH fail with errno CODE (fs-fault-preload.mjs), e.g. 'EROFS:<case>/mnt' for a read-only mount. */
  fsFault?: string;
  setup?: (d: CaseDirs) => Promise<void> | void;
  /** 'error': exit 1 and one line; 'works': exit 0, stderr only the warnings matched by `expect`. */
  outcome: 'error' | 'works';
  /** The whole stderr line (placeholders in place of paths); for 'works', every stderr line. */
  expect: RegExp;
}

async function png(dir: string, name: string, width: number, height: number, salt = 0): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const px = new Uint8Array(width * height * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + salt * 11) % 256;
  const path = join(dir, name);
  await sharp(px, { raw: { width, height, channels: 3 } }).png().toFile(path);
  return path;
}

/** `count` small PNGs named 0.png, 1.png, … */
async function pngs(dir: string, count: number, width = 16, height = 16): Promise<void> {
  for (let i = 0; i < count; i++) await png(dir, `${i}.png`, width, height, i);
}

/** A labelled source folder (images/ + labels.csv) with the given CSV body. */
async function labelledFolder(dir: string, csv: string, images = 4, side = 16): Promise<void> {
  await pngs(join(dir, 'images'), images, side, side);
  writeFileSync(join(dir, 'labels.csv'), csv);
}

const CSV_HEADER = 'filename,num_particles,planar_dist,depth_dist\n';
const rows = (n: number, value = (i: number) => `${i + 1},0.5,0.25`) => Array.from({ length: n }, (_, i) => `${i}.png,${value(i)}\n`).join('');

/** A copy of the artifacts (the big checkpoint hard-linked, so a write to it would show in the shared one). */
function copyArtifacts(from: string, to: string, skip: string[] = []): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    if (skip.includes(name)) continue;
    if (name.endsWith('.safetensors')) linkSync(join(from, name), join(to, name));
    else copyFileSync(join(from, name), join(to, name));
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A small PNG whose header claims width×height (a valid IHDR with its CRC): what a 20k×20k scan looks like to a header read. */
async function hugePng(path: string, width: number, height: number): Promise<void> {
  await png(join(path, '..'), 'tmp-small.png', 1, 1);
  const bytes = readFileSync(join(path, '..', 'tmp-small.png'));
  unlinkSync(join(path, '..', 'tmp-small.png'));
  // IHDR data starts at byte 16 (8 signature + 4 length + 4 type); its CRC covers type + data (bytes 12..28).
  bytes.writeUInt32BE(width, 16);
  bytes.writeUInt32BE(height, 20);
  bytes.writeUInt32BE(crc32(bytes.subarray(12, 29)), 29);
  writeFileSync(path, bytes);
}

function truncateTo(path: string, fraction: number): void {
  const size = readFileSync(path).length;
  truncateSync(path, Math.floor(size * fraction));
}

/** A copy of a checkpoint's model.safetensors with `change` applied to one tensor's values. */
async function alteredCheckpoint(from: string, to: string, tensor: string, change: (v: Float32Array) => void): Promise<void> {
  const { tensors, metadata } = await readSafetensors(from);
  const t = tensors.get(tensor)!;
  const data = Float32Array.from(t.data as Float32Array);
  change(data);
  tensors.set(tensor, { ...t, data });
  writeFileSync(to, Buffer.concat(encodeSafetensors(tensors, metadata)));
}

/** A run lock as src/io/run-lock.ts writes it. */
function lockFile(dir: string, pid: number): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, '.lock'), `${JSON.stringify({ pid, host: hostname(), started: '2026-01-02T03:04:05.678Z' })}\n`);
}

/** A pid no process has: above Linux's pid_max ceiling (2^22). */
const DEAD_PID = 4_194_304 + 12_345;

const WRONG_KEY = 'wrong0123456789abcdefghijklmnopqrstuvwxyzAB';

export const CASES: Case[] = [
  // ── artifacts ─────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'artifacts-missing', area: 'artifacts', title: '--artifacts names a folder that does not exist', command: 'train',
    args: ['--artifacts', '<case>/nowhere'], outcome: 'error',
    expect: /^ort-dann: --artifacts <case>\/nowhere: no such folder; check the path, or build artifacts there with `ort-dann build-artifacts --out <case>\/nowhere`$/,
  },
  {
    id: 'artifacts-no-manifest', area: 'artifacts', title: 'the artifacts folder has no manifest.json', command: 'train',
    setup: (d) => copyArtifacts(d.artifacts, join(d.input, 'artifacts'), ['manifest.json']),
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/manifest\.json is missing; rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-manifest-not-json', area: 'artifacts', title: 'manifest.json is cut short (not valid JSON)', command: 'train',
    setup: (d) => { copyArtifacts(d.artifacts, join(d.input, 'artifacts')); truncateTo(join(d.input, 'artifacts', 'manifest.json'), 0.5); },
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/manifest\.json is not valid JSON; rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-format-version', area: 'artifacts', title: 'manifest.json is from another artifacts format version', command: 'train',
    setup: (d) => {
      copyArtifacts(d.artifacts, join(d.input, 'artifacts'));
      const file = join(d.input, 'artifacts', 'manifest.json');
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), formatVersion: 2 }));
    },
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/manifest\.json has format version 2, this ort-dann reads version 1; rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-manifest-image-size', area: 'artifacts', title: 'manifest.json edited to another imageSize than its models take', command: 'train',
    setup: (d) => {
      copyArtifacts(d.artifacts, join(d.input, 'artifacts'));
      const file = join(d.input, 'artifacts', 'manifest.json');
      const m = JSON.parse(readFileSync(file, 'utf8'));
      writeFileSync(file, JSON.stringify({ ...m, config: { ...m.config, imageSize: 100000 } }));
    },
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/manifest\.json: config\.imageSize is 100000, but training_model\.onnx takes 128×128 images \(the manifest was edited or damaged\); rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-onnx-missing', area: 'artifacts', title: 'training_model.onnx was deleted from the artifacts', command: 'train',
    setup: (d) => copyArtifacts(d.artifacts, join(d.input, 'artifacts'), ['training_model.onnx']),
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/training_model\.onnx is missing; rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-onnx-truncated', area: 'artifacts', title: 'training_model.onnx is truncated (half the bytes)', command: 'train',
    setup: (d) => { copyArtifacts(d.artifacts, join(d.input, 'artifacts')); truncateTo(join(d.input, 'artifacts', 'training_model.onnx'), 0.5); },
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/training_model\.onnx cannot be loaded by ONNX Runtime \(.+\); rebuild the artifacts with `ort-dann build-artifacts --out <case>\/artifacts`$/,
  },
  {
    id: 'artifacts-checkpoint-truncated', area: 'artifacts', title: 'the initial checkpoint.safetensors is truncated', command: 'train',
    setup: (d) => {
      copyArtifacts(d.artifacts, join(d.input, 'artifacts'), ['checkpoint.safetensors']);
      const bytes = readFileSync(join(d.artifacts, 'checkpoint.safetensors'));
      writeFileSync(join(d.input, 'artifacts', 'checkpoint.safetensors'), bytes.subarray(0, bytes.length >> 1));
    },
    args: ['--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: /^ort-dann: <case>\/artifacts\/checkpoint\.safetensors: truncated \(tensor "[\w.]+" ends at data byte \d+, the file has \d+ data bytes\); re-save or re-download it$/,
  },
  {
    id: 'artifacts-image-size-conflict', area: 'artifacts', title: '--image-size differs from the size the --artifacts were built for', command: 'train',
    args: ['--image-size', '256'], outcome: 'error',
    expect: /^ort-dann: --image-size 256: the --artifacts <artifacts> are built for 128 px; drop --image-size, or build 256 px artifacts with `ort-dann build-artifacts --image-size 256`$/,
  },
  {
    id: 'artifacts-resume-other-size', area: 'artifacts', title: '--resume with artifacts of another image size than the run was trained with', command: 'train',
    setup: async (d) => {
      await buildArtifacts({ config: makeConfig({ imageSize: 160, backbone: 'resnet18' }), out: join(d.input, 'artifacts-160'), weights: 'none', weightsCache: d.input, seed: 3 });
    },
    args: ['--artifacts', '<case>/artifacts-160', '--resume', '--run-dir', '<prev-run>'], outcome: 'error',
    expect: /^ort-dann: --resume: <prev-run> was trained with resnet18 at 128 px \(num_particles, planar_dist, depth_dist\), but --artifacts <case>\/artifacts-160 are resnet18 at 160 px \(num_particles, planar_dist, depth_dist\); resume with the run's artifacts or start a new run$/,
  },
  {
    id: 'artifacts-outputs-mismatch', area: 'artifacts', title: 'a labelled --source folder has other label columns than the artifacts predict', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `filename,size,brightness\n${rows(4, (i) => `${i},0.5`)}`),
    args: ['--source', '<case>/source', '--source-val', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: --source <case>\/source: its labels are size, brightness but the artifacts predict num_particles, planar_dist, depth_dist; rebuild the artifacts with --outputs size,brightness$/,
  },

  // ── data ──────────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'target-missing', area: 'data', title: '--target folder does not exist', command: 'train',
    args: ['--target', '<case>/nope'], outcome: 'error',
    expect: /^ort-dann: --target <case>\/nope: folder not found; check the path$/,
  },
  {
    id: 'target-empty', area: 'data', title: '--target folder is empty', command: 'train',
    setup: (d) => { mkdirSync(join(d.input, 'empty')); },
    args: ['--target', '<case>/empty'], outcome: 'error',
    expect: /^ort-dann: --target <case>\/empty: no images found \(readable: [.\w ]+\); put images there or point at the right folder$/,
  },
  {
    id: 'target-zero-byte', area: 'data', title: 'a zero-byte image in the --target folder', command: 'train',
    setup: async (d) => { await pngs(join(d.input, 'target'), 3); writeFileSync(join(d.input, 'target', 'empty.png'), ''); },
    args: ['--target', '<case>/target'], outcome: 'error',
    expect: /^ort-dann: <case>\/target\/empty\.png: empty file \(0 bytes\); re-export it or remove it; or pass --skip-bad-images to leave unreadable images out$/,
  },
  {
    id: 'target-corrupt', area: 'data', title: 'a file of random bytes named .png in the --target folder', command: 'train',
    setup: async (d) => {
      await pngs(join(d.input, 'target'), 3);
      writeFileSync(join(d.input, 'target', 'noise.png'), Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 131 + 7) % 256)));
    },
    args: ['--target', '<case>/target'], outcome: 'error',
    expect: /^ort-dann: <case>\/target\/noise\.png: not an image format sharp can read; convert it to PNG or remove it; or pass --skip-bad-images to leave unreadable images out$/,
  },
  {
    id: 'target-truncated', area: 'data', title: 'a truncated PNG in the --target folder (header intact, pixels cut off)', command: 'train',
    setup: async (d) => {
      await png(join(d.input, 'target'), 'good.png', 64, 64);
      truncateTo(await png(join(d.input, 'target'), 'cut.png', 64, 64, 5), 0.5);
    },
    args: ['--target', '<case>/target'], outcome: 'error',
    expect: /^ort-dann: <case>\/target\/cut\.png: cannot decode image \(.+\); it is truncated or corrupt: re-export it or remove it; or pass --skip-bad-images to leave unreadable images out$/,
  },
  {
    id: 'target-not-image', area: 'data', title: 'a text file among the --target images', command: 'train',
    setup: async (d) => { await pngs(join(d.input, 'target'), 3); writeFileSync(join(d.input, 'target', 'notes.txt'), 'taken on Monday\n'); },
    args: ['--target', '<case>/target'], outcome: 'error',
    expect: /^ort-dann: <case>\/target\/notes\.txt: not an image file \(unknown extension\); move it out of the image folder; or pass --skip-bad-images to leave unreadable images out$/,
  },
  {
    id: 'target-huge-dimensions', area: 'data', title: 'an image whose header claims 20000×20000 pixels', command: 'train',
    setup: async (d) => { await pngs(join(d.input, 'target'), 3); await hugePng(join(d.input, 'target', 'huge.png'), 20000, 20000); },
    args: ['--target', '<case>/target'], outcome: 'error',
    expect: /^ort-dann: <case>\/target\/huge\.png: image has more than 268402689 pixels \(libvips' input limit\); shrink it or remove it; or pass --skip-bad-images to leave unreadable images out$/,
  },
  {
    id: 'images-smaller-than-model', area: 'data', title: 'images smaller than the model size (24×24 for a 128 px model) are upsampled and train', command: 'train',
    setup: async (d) => {
      await labelledFolder(join(d.input, 'source'), CSV_HEADER + rows(4), 4, 24);
      await pngs(join(d.input, 'target'), 4, 24, 24);
    },
    args: ['--source', '<case>/source', '--source-val', '<case>/source', '--target', '<case>/target'], outcome: 'works',
    expect: /^$/,
  },
  {
    id: 'images-one-pixel', area: 'data', title: '1×1 images train (upsampled to the model size)', command: 'train',
    setup: (d) => pngs(join(d.input, 'target'), 4, 1, 1),
    args: ['--target', '<case>/target'], outcome: 'works',
    expect: /^$/,
  },
  {
    id: 'source-missing', area: 'data', title: '--source names a simulator module that does not exist', command: 'train',
    args: ['--source', '<case>/my-sim.mjs'], outcome: 'error',
    expect: /^ort-dann: --source <case>\/my-sim\.mjs: file not found; check the path$/,
  },
  {
    id: 'source-no-labels-csv', area: 'data', title: 'a --source folder of images without labels.csv', command: 'train',
    setup: (d) => pngs(join(d.input, 'source', 'images'), 4),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: --source <case>\/source: no labels\.csv; a labelled folder needs images\/ and labels\.csv with "filename,<output names…>"$/,
  },
  {
    id: 'source-module-throws', area: 'data', title: 'a --source simulator module that throws', command: 'train',
    setup: (d) => writeFileSync(join(d.input, 'sim.mjs'), "export async function generate() { throw new Error('detector config not found'); }\n"),
    args: ['--source', '<case>/sim.mjs', '--source-val', '<case>/sim.mjs'], outcome: 'error',
    expect: /^ort-dann: <case>\/sim\.mjs: generate\(\) threw for sample 0: detector config not found; fix the module$/,
  },
  {
    id: 'labels-missing-image', area: 'data', title: 'the --target-labels CSV lists an image that is not in the folder', command: 'train',
    setup: async (d) => { await pngs(join(d.input, 'val'), 2); writeFileSync(join(d.input, 'labels.csv'), CSV_HEADER + rows(3)); },
    args: ['--target-val', '<case>/val', '--target-labels', '<case>/labels.csv'], outcome: 'error',
    expect: /^ort-dann: <case>\/labels\.csv:4: <case>\/val\/2\.png not found; add the image or delete the row$/,
  },
  {
    id: 'labels-wrong-columns', area: 'data', title: 'a labels CSV row with a missing column', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n1.png,2,0.5\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:3: expected 4 columns \(filename,num_particles,planar_dist,depth_dist\), got 3; fix the row$/,
  },
  {
    id: 'labels-duplicate', area: 'data', title: 'a labels CSV naming the same image twice', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n1.png,2,0.5,0.25\n0.png,3,0.5,0.25\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:4: duplicate filename "0\.png" \(first on line 2\); keep one row per image$/,
  },
  {
    id: 'labels-path-outside', area: 'data', title: 'a labels CSV row naming a file outside the image folder (../)', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n../../secret.png,2,0.5,0.25\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:3: filename "\.\.\/\.\.\/secret\.png" must be a path relative to the image folder; fix the row$/,
  },
  {
    id: 'labels-nan', area: 'data', title: 'a NaN label', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n1.png,NaN,0.5,0.25\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:3: num_particles is "NaN", not a finite number; fix the value$/,
  },
  {
    id: 'labels-inf', area: 'data', title: 'an infinite label (inf)', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n1.png,2,inf,0.25\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:3: planar_dist is "inf", not a finite number; fix the value$/,
  },
  {
    id: 'labels-float32-overflow', area: 'data', title: 'a label beyond float32 range (1e39: finite as a double, infinite in training)', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), `${CSV_HEADER}0.png,1,0.5,0.25\n1.png,2,0.5,1e39\n`, 2),
    args: ['--source', '<case>/source'], outcome: 'error',
    expect: /^ort-dann: <case>\/source\/labels\.csv:3: depth_dist is "1e39", beyond the float32 range \(±3\.4e38\) the model trains in; fix the value$/,
  },
  {
    id: 'labels-loss-overflow', area: 'data', title: 'labels so large (1e30) that the raw-target loss overflows to Infinity on the first step', command: 'train',
    setup: (d) => labelledFolder(join(d.input, 'source'), CSV_HEADER + rows(4, (i) => `1e30,${i},1`)),
    args: ['--source', '<case>/source', '--no-standardize-targets'], outcome: 'error',
    expect: /^ort-dann: step 1: the loss is Infinity; training stopped before the first checkpoint \(lower --lr, check labels, or pass --on-nan skip\)$/,
  },

  // ── flags ─────────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'flag-unknown', area: 'flags', title: 'an unknown flag', command: 'train',
    args: ['--learning-rate', '1e-3'], outcome: 'error',
    expect: /^ort-dann: Unknown arguments?: learning-rate, learningRate \(see ort-dann --help\)$/,
  },
  {
    id: 'flag-batch-size-zero', area: 'flags', title: '--batch-size out of range', command: 'train',
    args: ['--batch-size', '0'], outcome: 'error',
    expect: /^ort-dann: --batch-size 0: must be an integer from 1 to 4096$/,
  },
  {
    id: 'flag-epochs-not-number', area: 'flags', title: '--epochs is not a number', command: 'train',
    args: ['--epochs', 'ten'], outcome: 'error',
    expect: /^ort-dann: --epochs ten: not a number \(see ort-dann --help\)$/,
  },
  {
    id: 'flag-lambda-negative', area: 'flags', title: '--lambda-domain negative', command: 'train',
    args: ['--lambda-domain', '-1'], outcome: 'error',
    expect: /^ort-dann: --lambda-domain -1: must be a number from 0 to 1000000$/,
  },
  {
    id: 'flag-lr-abc', area: 'flags', title: '--lr is not a number', command: 'train',
    args: ['--lr', 'abc'], outcome: 'error',
    expect: /^ort-dann: --lr abc: give a positive number such as 2e-3, or 'auto'$/,
  },
  {
    id: 'flag-ep-choice', area: 'flags', title: '--ep names an execution provider that does not exist', command: 'train',
    args: ['--ep', 'tpu'], outcome: 'error',
    expect: /^ort-dann: Invalid values: Argument: ep, Given: "tpu", Choices: "cpu", "cuda", "webgpu" \(see ort-dann --help\)$/,
  },
  {
    id: 'ep-cuda-not-installed', area: 'flags', title: '--ep cuda where onnxruntime-node has no CUDA provider files', command: 'train',
    args: ['--ep', 'cuda'], outcome: 'error',
    expect: /^ort-dann: --ep cuda: the CUDA execution provider is not installed in onnxruntime-node; install it with `npx ort-dann install-cuda` \(or `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci` on a machine that reaches NuGet\), or use --ep cpu$/,
  },
  ...([['cuda', 'CUDA'], ['webgpu', 'WebGPU']] as const).map(([ep, name]): Case => ({
    id: `ep-${ep}-fused-batchnorm`, area: 'artifacts', title: `--ep ${ep} with artifacts from an earlier build whose BatchNorm uses the training kernel`, command: 'train',
    setup: (d) => {
      copyArtifacts(d.artifacts, join(d.input, 'artifacts'));
      const file = join(d.input, 'artifacts', 'manifest.json');
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), batchNormForward: 'fused' }));
    },
    args: ['--ep', ep, '--artifacts', '<case>/artifacts'], outcome: 'error',
    expect: new RegExp(`^ort-dann: --ep ${ep}: <case>\\/artifacts come from an earlier ort-dann whose BatchNorm uses ONNX's training kernel, which the ${name} provider does not run; build new artifacts with \`npx ort-dann build-artifacts --out <case>\\/artifacts-new\` and pass --artifacts <case>\\/artifacts-new$`),
  })),
  {
    id: 'flag-source-size-below-batch', area: 'flags', title: '--source-size smaller than --batch-size', command: 'train',
    args: ['--source-size', '1'], outcome: 'error',
    expect: /^ort-dann: --source-size 1 is smaller than --batch-size 2; an epoch needs at least one batch$/,
  },
  {
    id: 'flag-target-val-without-target', area: 'flags', title: '--target-val without --target (conflicting)', command: 'train',
    drop: ['--target'], args: [], outcome: 'error',
    expect: /^ort-dann: --target-val\/--target-labels need --target \(the unlabelled target training images\)$/,
  },
  {
    id: 'flag-target-without-val', area: 'flags', title: '--target without --target-val', command: 'train',
    drop: ['--target-val', '--target-labels'], args: [], outcome: 'error',
    expect: /^ort-dann: --target-val: give a folder of target validation images \(the seed validates on both domains\)$/,
  },
  {
    id: 'flag-resume-empty-run-dir', area: 'flags', title: '--resume on a run directory without a checkpoint', command: 'train',
    setup: (d) => { mkdirSync(join(d.input, 'run')); },
    args: ['--resume', '--run-dir', '<case>/run'], outcome: 'error',
    expect: /^ort-dann: --resume: <case>\/run\/latest holds no checkpoint; start without --resume or give the --run-dir of an earlier run$/,
  },
  {
    id: 'flag-run-dir-taken', area: 'flags', title: '--run-dir of an earlier run without --resume', command: 'train',
    args: ['--run-dir', '<prev-run>'], outcome: 'error',
    expect: /^ort-dann: --run-dir <prev-run> already holds a run; pass --resume to continue it or choose another --run-name$/,
  },
  {
    id: 'flag-resume-bad-flag', area: 'flags', title: '--resume of an earlier run with a bad flag value (the checkpoint stays as it was)', command: 'train',
    args: ['--resume', '--run-dir', '<prev-run>', '--lr', '-1'], outcome: 'error',
    expect: /^ort-dann: --lr -1: give a positive number such as 2e-3, or 'auto'$/,
  },
  {
    id: 'flag-run-name-traversal', area: 'flags', title: '--run-name that would leave runs/ (../)', command: 'train',
    drop: ['--run-dir'], args: ['--run-name', '../../etc'], outcome: 'error',
    expect: /^ort-dann: --run-name \.\.\/\.\.\/etc: use letters, digits, '\.', '_' and '-' only$/,
  },
  {
    id: 'flag-wandb-run-id-traversal', area: 'flags', title: '--wandb-run-id that would leave the run directory (../)', command: 'train',
    args: ['--wandb', 'offline', '--wandb-run-id', '../../escape'], outcome: 'error',
    expect: /^ort-dann: --wandb-run-id "\.\.\/\.\.\/escape" is not a valid W&B run id \(no spaces or : ; , # \? \/ '\)$/,
  },

  // ── config files ──────────────────────────────────────────────────────────────────────────────────
  {
    id: 'config-missing', area: 'config files', title: 'build-artifacts --config names a missing file', command: 'build-artifacts',
    args: ['--config', '<case>/model.json'], outcome: 'error',
    expect: /^ort-dann: --config <case>\/model\.json: no such file; see models\/resnet34-dann\.json for the format$/,
  },
  {
    id: 'config-invalid-json', area: 'config files', title: 'build-artifacts --config is not valid JSON', command: 'build-artifacts',
    setup: (d) => writeFileSync(join(d.input, 'model.json'), '{ "backbone": "resnet18", }\n'),
    args: ['--config', '<case>/model.json'], outcome: 'error',
    expect: /^ort-dann: --config <case>\/model\.json: not valid JSON; see models\/resnet34-dann\.json for the format$/,
  },
  {
    id: 'config-unknown-key', area: 'config files', title: 'build-artifacts --config with an unknown key (a typo)', command: 'build-artifacts',
    setup: (d) => writeFileSync(join(d.input, 'model.json'), '{ "backbone": "resnet18", "imagesize": 128 }\n'),
    args: ['--config', '<case>/model.json'], outcome: 'error',
    expect: /^ort-dann: --config <case>\/model\.json: unknown key imagesize; allowed keys are name, backbone, imageSize, task, outputs, dropout, batchNormStats$/,
  },
  {
    id: 'config-image-size-too-small', area: 'config files', title: 'build-artifacts --config with an imageSize too small for the network', command: 'build-artifacts',
    drop: ['--image-size'],
    setup: (d) => writeFileSync(join(d.input, 'model.json'), '{ "backbone": "resnet18", "imageSize": 64 }\n'),
    args: ['--config', '<case>/model.json'], outcome: 'error',
    expect: /^ort-dann: --image-size 64: the feature map vanishes before the heads \(backbone stride 32, then AvgPool2d\(2\) and a 4×4\/2 conv\); use at least \d+ px, e\.g\. 128 or 256$/,
  },
  {
    id: 'config-outputs-duplicate', area: 'config files', title: 'build-artifacts --outputs with a repeated name', command: 'build-artifacts',
    args: ['--outputs', 'size,size'], outcome: 'error',
    expect: /^ort-dann: --outputs: names must be distinct \(got size,size\)$/,
  },

  // ── predict ───────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'predict-model-missing', area: 'predict', title: 'predict --model names a missing file', command: 'predict',
    args: ['--model', '<case>/model.onnx'], outcome: 'error',
    expect: /^ort-dann: <case>\/model\.onnx does not exist; check the path$/,
  },
  {
    id: 'predict-model-truncated', area: 'predict', title: 'predict --model is a truncated model.onnx', command: 'predict',
    setup: (d) => {
      const bytes = readFileSync(join(d.prevRun, 'model.onnx'));
      writeFileSync(join(d.input, 'model.onnx'), bytes.subarray(0, bytes.length >> 1));
    },
    args: ['--model', '<case>/model.onnx'], outcome: 'error',
    expect: /^ort-dann: <case>\/model\.onnx is not a valid ONNX model \(.+\); re-export or rebuild it$/,
  },
  {
    id: 'predict-model-not-onnx', area: 'predict', title: 'predict --model is not an ONNX file', command: 'predict',
    setup: (d) => writeFileSync(join(d.input, 'model.onnx'), 'version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 62068840\n'),
    args: ['--model', '<case>/model.onnx'], outcome: 'error',
    expect: /^ort-dann: <case>\/model\.onnx is not a valid ONNX model \(.+\); re-export or rebuild it$/,
  },
  {
    id: 'predict-model-training-graph', area: 'predict', title: 'predict --model given a training artifact (eval_model.onnx) instead of an export', command: 'predict',
    args: ['--model', '<artifacts>/eval_model.onnx'], outcome: 'error',
    expect: /^ort-dann: <artifacts>\/eval_model\.onnx: an ONNX model without ort-dann metadata \(image size, normalization, output names\); give --model the model\.onnx that `ort-dann train` or `ort-dann export --checkpoint RUN_DIR` wrote \(RUN_DIR\/model\.onnx\)$/,
  },
  {
    id: 'predict-image-corrupt', area: 'predict', title: 'predict on a corrupt image file', command: 'predict',
    setup: (d) => writeFileSync(join(d.input, 'scan.png'), Buffer.from('\x89PNG\r\n\x1a\n not really', 'latin1')),
    drop: ['<images>'], args: ['<case>/scan.png'], outcome: 'error',
    expect: /^ort-dann: <case>\/scan\.png: .+; or pass --skip-bad-images to leave unreadable images out$/,
  },

  // ── W&B ───────────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'wandb-bad-key', area: 'W&B', title: 'W&B rejects the API key (HTTP 401)', command: 'train',
    env: { WANDB_API_KEY: WRONG_KEY, WANDB_BASE_URL: '<wandb>' },
    args: ['--wandb', 'online'], outcome: 'error',
    expect: /^ort-dann: W&B rejected the API key from WANDB_API_KEY \(HTTP 401: Unauthorized: invalid API key\); copy a valid key from <wandb>\/authorize, or run with --wandb offline and sync later$/,
  },
  {
    id: 'wandb-online-no-key', area: 'W&B', title: '--wandb online without an API key', command: 'train',
    env: { WANDB_BASE_URL: '<wandb>' },
    args: ['--wandb', 'online'], outcome: 'error',
    expect: /^ort-dann: --wandb online needs a W&B API key: set WANDB_API_KEY, or add "machine <wandb-host> login user password <key>" to ~\/\.netrc \(or use --wandb offline and sync later with ort-dann wandb-sync\)$/,
  },
  {
    id: 'wandb-unreachable', area: 'W&B', title: 'W&B unreachable in online mode: the run continues offline', command: 'train',
    env: { WANDB_API_KEY: WRONG_KEY, WANDB_BASE_URL: '<unreachable>' },
    args: ['--wandb', 'online'], outcome: 'works',
    expect: /^ort-dann: warning: cannot reach W&B at <unreachable> \(UpsertBucket failed: .+\); logging offline, upload later with: ort-dann wandb-sync <run>$/,
  },

  // ── outputs: a command replaces only what it wrote itself, and only with --force ─────────────────
  {
    id: 'export-over-checkpoint', area: 'outputs', title: 'export --out names the run\'s own checkpoint file', command: 'export',
    args: ['--out', '<prev-run>/best/model.safetensors'], outcome: 'error',
    expect: /^ort-dann: --out <prev-run>\/best\/model\.safetensors holds a training checkpoint, which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'export-over-training-model', area: 'outputs', title: 'export --out names a training artifact (training_model.onnx)', command: 'export',
    args: ['--out', '<artifacts>/training_model.onnx'], outcome: 'error',
    expect: /^ort-dann: --out <artifacts>\/training_model\.onnx holds a file of training artifacts \(build-artifacts\), which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'export-over-run-dir', area: 'outputs', title: 'export --out names a run directory', command: 'export',
    args: ['--out', '<prev-run>'], outcome: 'error',
    expect: /^ort-dann: --out <prev-run> is a folder \(it holds a training run\); name a file, e.g\. <prev-run>\/model\.onnx$/,
  },
  {
    id: 'export-over-model', area: 'outputs', title: 'export --out names an earlier exported model (without --force)', command: 'export',
    args: ['--out', '<prev-run>/model.onnx'], outcome: 'error',
    expect: /^ort-dann: --out <prev-run>\/model\.onnx already holds an exported model; pass --force to replace it, or choose another --out$/,
  },
  {
    id: 'export-force', area: 'outputs', title: 'export --force replaces an earlier exported model', command: 'export',
    setup: (d) => { mkdirSync(d.run, { recursive: true }); copyFileSync(join(d.prevRun, 'model.onnx'), join(d.run, 'model.onnx')); },
    args: ['--force'], outcome: 'works',
    expect: /^$/,
  },
  {
    id: 'predict-out-labels', area: 'outputs', title: 'predict --out names the labels CSV (an input)', command: 'predict',
    args: ['--out', '<demo>/target-val-labels.csv'], outcome: 'error',
    expect: /^ort-dann: --out <demo>\/target-val-labels\.csv holds a labels CSV \(an input\), which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'predict-out-other-csv', area: 'outputs', title: 'predict --out names a CSV that predict did not write', command: 'predict',
    setup: (d) => { writeFileSync(join(d.input, 'notes.csv'), 'day,remark\nmonday,calibrated\n'); },
    args: ['--out', '<case>/notes.csv', '--force'], outcome: 'error',
    expect: /^ort-dann: --out <case>\/notes\.csv holds a file ort-dann did not write, which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'evaluate-out-dir-images', area: 'outputs', title: 'evaluate --out-dir names the image folder (an input)', command: 'evaluate',
    args: ['--out-dir', '<demo>/target-val'], outcome: 'error',
    expect: /^ort-dann: --out-dir <demo>\/target-val holds images \(an input\), which this command does not replace \(not even with --force\); choose another --out-dir$/,
  },
  {
    id: 'evaluate-out-dir-run', area: 'outputs', title: 'evaluate --out-dir names a run directory', command: 'evaluate',
    args: ['--out-dir', '<prev-run>', '--force'], outcome: 'error',
    expect: /^ort-dann: --out-dir <prev-run> holds a training run, which this command does not replace \(not even with --force\); choose another --out-dir$/,
  },
  {
    id: 'build-artifacts-over-run', area: 'outputs', title: 'build-artifacts --out names a run directory', command: 'build-artifacts',
    args: ['--out', '<prev-run>'], outcome: 'error',
    expect: /^ort-dann: --out <prev-run> holds a training run, which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'build-artifacts-over-artifacts', area: 'outputs', title: 'build-artifacts --out names existing artifacts (without --force)', command: 'build-artifacts',
    args: ['--out', '<artifacts>'], outcome: 'error',
    expect: /^ort-dann: --out <artifacts> already holds training artifacts \(build-artifacts\); pass --force to replace it, or choose another --out$/,
  },
  {
    id: 'demo-data-over-images', area: 'outputs', title: 'demo-data --out names a folder of images', command: 'demo-data',
    args: ['--out', '<demo>/target-val'], outcome: 'error',
    expect: /^ort-dann: --out <demo>\/target-val holds images \(an input\), which this command does not replace \(not even with --force\); choose another --out$/,
  },
  {
    id: 'demo-data-over-file', area: 'outputs', title: 'demo-data --out names a file', command: 'demo-data',
    args: ['--out', '<demo>/target-val-labels.csv', '--force'], outcome: 'error',
    expect: /^ort-dann: --out <demo>\/target-val-labels\.csv holds a labels CSV \(an input\), which this command does not replace \(not even with --force\); choose another --out$/,
  },

  // ── run directory ────────────────────────────────────────────────────────────────────────────────
  {
    id: 'run-dir-is-file', area: 'run directory', title: '--run-dir names an existing file', command: 'train',
    args: ['--run-dir', '<demo>/target-val-labels.csv'], outcome: 'error',
    expect: /^ort-dann: --run-dir <demo>\/target-val-labels\.csv is a file, not a folder; choose another --run-dir$/,
  },
  {
    id: 'run-dir-locked', area: 'run directory', title: 'a second training into a run directory another live process holds', command: 'train',
    // The test runner's own pid: alive for as long as the case runs.
    setup: (d) => lockFile(join(d.input, 'run'), process.pid),
    args: ['--run-dir', '<case>/run'], outcome: 'error',
    expect: /^ort-dann: --run-dir <case>\/run is in use by process <pid> \(started <time>\); wait for it to finish or choose another --run-dir$/,
  },
  {
    id: 'run-dir-stale-lock', area: 'run directory', title: 'a lock left by a process that is gone (killed) is taken over', command: 'train',
    setup: (d) => lockFile(d.run, DEAD_PID),
    args: [], outcome: 'works',
    expect: /^ort-dann: warning: --run-dir <run> was locked by process <pid> \(started <time>\), which is gone; taking the run over$/,
  },

  // ── diverging runs: no NaN model is ever saved or exported ───────────────────────────────────────
  {
    id: 'lr-nan-weights', area: 'diverging runs', title: 'a learning rate so large (1e39) that the first step makes weights infinite', command: 'train',
    args: ['--lr', '1e39'], outcome: 'error',
    expect: /^ort-dann: step 1: the optimizer step made parameters NaN\/Inf; training stopped before the first checkpoint \(lower --lr\)$/,
  },
  {
    id: 'lr-nan-weights-skip', area: 'diverging runs', title: 'the same with --on-nan skip (an applied update cannot be skipped)', command: 'train',
    args: ['--lr', '1e39', '--on-nan', 'skip'], outcome: 'error',
    expect: /^ort-dann: step 1: the optimizer step made parameters NaN\/Inf; training stopped before the first checkpoint \(lower --lr; --on-nan skip cannot undo an applied update\)$/,
  },
  {
    id: 'lr-nan-outputs', area: 'diverging runs', title: '--lr 1e6: finite weights whose outputs overflow to NaN', command: 'train',
    args: ['--lr', '1e6'], outcome: 'error',
    expect: /^ort-dann: epoch 0: the validation loss is NaN: the model's outputs are no longer finite; training stopped before the first checkpoint \(lower --lr\)$/,
  },
  {
    id: 'export-nan-checkpoint', area: 'diverging runs', title: 'export of a checkpoint holding a NaN weight', command: 'export',
    setup: (d) => alteredCheckpoint(join(d.prevRun, 'latest', 'model.safetensors'), join(d.input, 'nan.safetensors'), 'label_predictor.regressor.1.weight', (v) => { v[0] = NaN; }),
    args: ['--checkpoint', '<case>/nan.safetensors', '--artifacts', '<artifacts>'], outcome: 'error',
    expect: /^ort-dann: <case>\/nan\.safetensors: parameter label_predictor\.regressor\.1\.weight holds NaN \(element 0\); nothing was written; export an earlier checkpoint, or retrain with a lower --lr$/,
  },
  {
    id: 'export-overflowing-checkpoint', area: 'diverging runs', title: 'export of a checkpoint whose finite weights overflow (1e38) in the forward pass', command: 'export',
    setup: (d) => alteredCheckpoint(join(d.prevRun, 'latest', 'model.safetensors'), join(d.input, 'big.safetensors'), 'label_predictor.regressor.1.weight', (v) => v.fill(1e38)),
    args: ['--checkpoint', '<case>/big.safetensors', '--artifacts', '<artifacts>'], outcome: 'error',
    expect: /^ort-dann: <case>\/big\.safetensors: the model outputs (NaN|-?Infinity) \(prediction\) on a probe batch although its weights are finite \(they overflow\); nothing was written; export an earlier checkpoint, or retrain with a lower --lr$/,
  },

  // ── user code ────────────────────────────────────────────────────────────────────────────────────
  {
    id: 'source-never-resolves', area: 'user code', title: 'a --source module whose generate() never resolves', command: 'train',
    setup: (d) => { writeFileSync(join(d.input, 'sim.mjs'), 'export function generate() { return new Promise(() => {}); }\n'); },
    args: ['--source', '<case>/sim.mjs', '--source-val', '<case>/sim.mjs', '--source-timeout', '1'], outcome: 'error',
    expect: /^ort-dann: <case>\/sim\.mjs: generate\(\) did not return sample 0 within 1 s; fix the module, or raise --source-timeout if one sample really takes longer$/,
  },
  {
    id: 'source-endless-loop', area: 'user code', title: 'a --source module whose generate() loops forever (blocks its thread)', command: 'train',
    setup: (d) => { writeFileSync(join(d.input, 'sim.mjs'), 'export function generate() { for (;;) {} }\n'); },
    args: ['--source', '<case>/sim.mjs', '--source-val', '<case>/sim.mjs', '--source-timeout', '1'], outcome: 'error',
    expect: /^ort-dann: <case>\/sim\.mjs: sample 0 did not finish within 32 s \(the module blocks its thread, e\.g\. an endless loop\); fix the module, or raise --source-timeout if samples really take that long$/,
  },

  // ── file system ──────────────────────────────────────────────────────────────────────────────────
  {
    id: 'run-dir-read-only-mount', area: 'file system', title: 'a new --run-dir under a read-only mount', command: 'train',
    setup: (d) => { mkdirSync(join(d.input, 'mnt')); },
    fsFault: 'EROFS:<case>/mnt',
    args: ['--run-dir', '<case>/mnt/run'], outcome: 'error',
    expect: /^ort-dann: --run-dir: cannot create folder <case>\/mnt\/run: the file system is read-only \(EROFS\); use a path on a writable disk, or choose another --run-dir$/,
  },
  {
    id: 'run-dir-read-only-existing', area: 'file system', title: 'an existing --run-dir on a read-only mount', command: 'train',
    setup: (d) => { mkdirSync(join(d.input, 'mnt', 'run'), { recursive: true }); },
    fsFault: 'EROFS:<case>/mnt',
    args: ['--run-dir', '<case>/mnt/run'], outcome: 'error',
    expect: /^ort-dann: --run-dir: cannot open <case>\/mnt\/run\/\.lock: the file system is read-only \(EROFS\); use a path on a writable disk, or choose another --run-dir$/,
  },
  {
    id: 'run-dir-permission-denied', area: 'file system', title: 'a --run-dir in a folder the user may not write (EACCES)', command: 'train',
    setup: (d) => { mkdirSync(join(d.input, 'theirs')); },
    fsFault: 'EACCES:<case>/theirs',
    args: ['--run-dir', '<case>/theirs/run'], outcome: 'error',
    expect: /^ort-dann: --run-dir: cannot create folder <case>\/theirs\/run: permission denied \(EACCES\); check its permissions, or choose another --run-dir$/,
  },
  {
    id: 'evaluate-out-dir-read-only', area: 'file system', title: 'evaluate --out-dir on a read-only mount', command: 'evaluate',
    setup: (d) => { mkdirSync(join(d.input, 'mnt')); },
    fsFault: 'EROFS:<case>/mnt',
    args: ['--out-dir', '<case>/mnt/evaluation'], outcome: 'error',
    expect: /^ort-dann: cannot create folder <case>\/mnt\/evaluation: the file system is read-only \(EROFS\); use a path on a writable disk$/,
  },
  {
    id: 'predict-out-read-only', area: 'file system', title: 'predict --out on a read-only mount', command: 'predict',
    setup: (d) => { mkdirSync(join(d.input, 'mnt')); },
    fsFault: 'EROFS:<case>/mnt',
    args: ['--out', '<case>/mnt/predictions.csv'], outcome: 'error',
    expect: /^ort-dann: cannot write <case>\/mnt\/predictions\.csv: the file system is read-only \(EROFS\); choose an output path on a writable disk \(any previous predictions\.csv is unchanged\)$/,
  },
  {
    id: 'build-artifacts-out-read-only', area: 'file system', title: 'build-artifacts --out on a read-only mount', command: 'build-artifacts',
    setup: (d) => { mkdirSync(join(d.input, 'mnt')); },
    fsFault: 'EROFS:<case>/mnt',
    args: ['--out', '<case>/mnt/artifacts'], outcome: 'error',
    expect: /^ort-dann: cannot write <case>\/mnt\/artifacts: the file system is read-only \(EROFS\); choose an output path on a writable disk \(any previous artifacts is unchanged\)$/,
  },

  // ── numeric flags out of range (checked before any work) ─────────────────────────────────────────
  {
    id: 'flag-sim-workers-negative', area: 'flags', title: '--sim-workers -1', command: 'train',
    args: ['--sim-workers', '-1'], outcome: 'error',
    expect: /^ort-dann: --sim-workers -1: must be an integer from 0 to 256$/,
  },
  {
    id: 'flag-threads-huge', area: 'flags', title: '--threads far beyond any machine', command: 'train',
    args: ['--threads', '100000'], outcome: 'error',
    expect: /^ort-dann: --threads 100000: must be an integer from 1 to 1024$/,
  },
  {
    id: 'flag-source-timeout-zero', area: 'flags', title: '--source-timeout 0', command: 'train',
    args: ['--source-timeout', '0'], outcome: 'error',
    expect: /^ort-dann: --source-timeout 0: must be a number above 0 and at most 86400$/,
  },
  {
    id: 'build-artifacts-image-size-huge', area: 'flags', title: 'build-artifacts --image-size 100000', command: 'build-artifacts',
    args: ['--image-size', '100000'], outcome: 'error',
    expect: /^ort-dann: --image-size 100000: must be an integer from 16 to 2048$/,
  },
  {
    id: 'predict-threads-negative', area: 'flags', title: 'predict --threads -1', command: 'predict',
    args: ['--threads', '-1'], outcome: 'error',
    expect: /^ort-dann: --threads -1: must be an integer from 1 to 1024$/,
  },
  // ── misleading before: now named for what they are ──────────────────────────────────────────────
  {
    id: 'target-symlink-loop', area: 'data', title: '--target is a symbolic link loop', command: 'train',
    setup: (d) => { symlinkSync(join(d.input, 'loop'), join(d.input, 'loop')); },
    args: ['--target', '<case>/loop'], outcome: 'error',
    expect: /^ort-dann: --target <case>\/loop: a symbolic link loop \(ELOOP\); fix or remove the link$/,
  },
  {
    id: 'target-is-file', area: 'data', title: '--target names a file instead of a folder', command: 'train',
    args: ['--target', '<demo>/target-val-labels.csv'], outcome: 'error',
    expect: /^ort-dann: --target <demo>\/target-val-labels\.csv: is a file, not a folder; give the folder that holds the images$/,
  },
  {
    id: 'artifacts-is-run-dir', area: 'artifacts', title: '--artifacts names a run directory', command: 'train',
    args: ['--artifacts', '<prev-run>'], outcome: 'error',
    expect: /^ort-dann: --artifacts <prev-run> is a training run, not a build-artifacts folder; give the artifacts the run was trained from \(or continue that run with --run-dir <prev-run> --resume\)$/,
  },
  {
    id: 'batch-larger-than-data', area: 'flags', title: '--batch-size larger than the target images', command: 'train',
    args: ['--batch-size', '16', '--source-size', '16', '--val-size', '16'], outcome: 'error',
    expect: /^ort-dann: --batch-size 16 is larger than the 8 images of --source <demo>\/source-val; lower --batch-size to 8 or fewer, or add images$/,
  },
  {
    id: 'batch-of-one-per-domain', area: 'flags', title: '--batch-size 1 with per-domain BatchNorm statistics', command: 'train',
    args: ['--batch-size', '1'], outcome: 'error',
    expect: /^ort-dann: --batch-size 1: per-domain BatchNorm statistics need at least 2 images per domain; use --batch-size 2 or more \(or artifacts built with --bn-stats combined\)$/,
  },
  {
    id: 'resume-finished-run', area: 'flags', title: '--resume of a finished run with nothing left to train', command: 'train',
    setup: (d) => { cpSync(d.prevRun, d.run, { recursive: true }); },
    args: ['--resume'], outcome: 'error',
    expect: /^ort-dann: --resume: <run> has trained all 1 epochs of this plan \(step 1 of 1\); to train on, pass --epochs with more than 1 \(the schedule is then re-planned\)$/,
  },
  {
    id: 'resume-without-optimizer-state', area: 'flags', title: '--resume of a run whose latest/ lost optimizer.safetensors', command: 'train',
    setup: (d) => { cpSync(d.prevRun, d.run, { recursive: true }); rmSync(join(d.run, 'latest', 'optimizer.safetensors')); },
    args: ['--resume', '--epochs', '2'], outcome: 'error',
    expect: /^ort-dann: --resume: <run>\/latest holds the weights but not optimizer\.safetensors, so the run cannot continue where it stopped; restore that file, or start a new run with another --run-name$/,
  },
  {
    id: 'resume-optimizer-state-of-another-model', area: 'flags', title: '--resume of a run whose optimizer.safetensors lacks a tensor', command: 'train',
    setup: async (d) => {
      cpSync(d.prevRun, d.run, { recursive: true });
      const file = join(d.run, 'latest', 'optimizer.safetensors');
      const { tensors, metadata } = await readSafetensors(file);
      tensors.delete('feature_extractor.resnet_layers.0.weight.exp_avg');
      await writeSafetensors(file, tensors, metadata);
    },
    args: ['--resume', '--epochs', '2'], outcome: 'error',
    expect: /^ort-dann: <run>\/latest\/optimizer\.safetensors belongs to another checkpoint or is damaged; resume from a checkpoint directory this run saved \(it lacks feature_extractor\.resnet_layers\.0\.weight\.exp_avg\)$/,
  },
  {
    id: 'predict-images-subfolder', area: 'predict', title: 'predict on a data folder whose images are in images/ (the layout train and evaluate take)', command: 'predict',
    drop: ['<images>'], args: ['<demo>/target-val'], outcome: 'works',
    expect: /^predicted 4 images in <t> s \(<rate> images\/s\)$/,
  },
];
