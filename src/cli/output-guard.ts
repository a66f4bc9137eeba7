/**
 * What a command may write over. Every output flag (export --out, predict --out, evaluate --out-dir,
 * build-artifacts --out, demo-data --out) names a path that may already hold something; a command
 * only replaces what it wrote itself (its own kind), and only with --force. Anything else (a
 * checkpoint, artifacts, a run directory, input images or labels, an unknown file) is refused with
 * one line naming what is there, and never with advice to overwrite it.
 */
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { isImageFileName } from '../data/decode.ts';
import { UserError } from '../errors.ts';
import { describeFsError } from '../io/fs-error.ts';

export type PathKind =
  | 'missing' | 'empty folder'
  | 'exported model' | 'ONNX model' | 'checkpoint' | 'artifacts folder' | 'artifacts file' | 'run directory' | 'run file'
  | 'predictions' | 'evaluation folder' | 'demo data folder' | 'labels CSV' | 'images' | 'folder' | 'file';

/** How refusals describe a kind ("holds <this>"). */
const DESCRIBE: Record<PathKind, string> = {
  missing: 'nothing', 'empty folder': 'an empty folder',
  'exported model': 'an exported model', 'ONNX model': 'an ONNX model that is not an ort-dann export (e.g. a training artifact)',
  checkpoint: 'a training checkpoint', 'artifacts folder': 'training artifacts (build-artifacts)', 'artifacts file': 'a file of training artifacts (build-artifacts)',
  'run directory': 'a training run', 'run file': 'a file of a training run',
  predictions: 'predictions (ort-dann predict)', 'evaluation folder': 'an evaluation (ort-dann evaluate)', 'demo data folder': 'demo data (ort-dann demo-data)',
  'labels CSV': 'a labels CSV (an input)', images: 'images (an input)', folder: 'a folder of other files', file: 'a file ort-dann did not write',
};

/** The first `bytes` of a file, or the last ones when `fromEnd`. */
function head(file: string, bytes = 512, fromEnd = false): string {
  const fd = openSync(file, 'r');
  try {
    const position = fromEnd ? Math.max(0, fstatSync(fd).size - bytes) : 0;
    const buf = Buffer.alloc(bytes);
    return buf.subarray(0, readSync(fd, buf, 0, bytes, position)).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

const isImageName = isImageFileName;
const has = (dir: string, name: string) => {
  try {
    lstatSync(join(dir, name));
    return true;
  } catch {
    return false;
  }
};

function folderKind(dir: string): PathKind {
  const names = readdirSync(dir);
  if (names.length === 0) return 'empty folder';
  if (has(dir, 'latest') || has(dir, 'best') || has(dir, 'metrics.jsonl') || has(dir, '.lock')) return 'run directory';
  if (has(dir, 'model.safetensors')) return 'checkpoint';
  if (has(dir, 'manifest.json') && (has(dir, 'training_model.onnx') || has(dir, 'checkpoint.safetensors'))) return 'artifacts folder';
  if (has(dir, 'demo.json')) return 'demo data folder';
  if (has(dir, 'metrics.json') && has(dir, 'predictions.csv')) return 'evaluation folder';
  if (has(dir, 'images') || has(dir, 'labels.csv') || names.some(isImageName)) return 'images';
  return 'folder';
}

function fileKind(file: string): PathKind {
  const name = basename(file);
  const ext = extname(name).toLowerCase();
  const parent = dirname(file);
  if (ext === '.safetensors' || ext === '.pth' || ext === '.pt') return parent && folderKind(parent) === 'artifacts folder' ? 'artifacts file' : 'checkpoint';
  if (isImageName(name)) return 'images';
  if (ext === '.onnx') {
    // ONNX writes metadata_props after the graph, at the end of the file.
    if (head(file, 1 << 16, true).includes('ort_dann.metadata_version')) return 'exported model';
    return folderKind(parent) === 'artifacts folder' ? 'artifacts file' : 'ONNX model';
  }
  const text = head(file);
  if (ext === '.csv') return /^"?file"?,/.test(text) ? 'predictions' : /^"?filename"?,/.test(text) ? 'labels CSV' : 'file';
  if (ext === '.json') {
    if (/^\[\s*(\{"file"|\])/.test(text)) return 'predictions';
    if (name === 'manifest.json' && folderKind(parent) === 'artifacts folder') return 'artifacts file';
  }
  if (['metrics.jsonl', 'train.log', 'summary.json', 'report.html', '.lock'].includes(name) && folderKind(parent) === 'run directory') return 'run file';
  return 'file';
}

/** What `path` holds now (symlinks followed). */
export function pathKind(path: string): PathKind {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw describeFsError(e, { path });
  }
  return st.isDirectory() ? folderKind(path) : fileKind(path);
}

export interface GuardOptions {
  /** The flag naming the path, e.g. '--out'. */
  flag: string;
  /** The kinds this command writes (replaced with --force). An empty folder is always fine for a folder output. */
  own: PathKind[];
  /** Whether the output is a folder (then an empty folder is fine) or a file. */
  folder: boolean;
  force: boolean;
  /** A file name to suggest when a file output names a folder. */
  example?: string;
}

/**
 * Throws a one-line UserError unless writing `path` replaces nothing, or only output of this
 * command's own kind with --force. Call before any work starts.
 */
export function guardOutput(path: string, o: GuardOptions): void {
  const kind = pathKind(path);
  if (kind === 'missing' || (o.folder && kind === 'empty folder')) return;
  if (o.own.includes(kind)) {
    if (o.force) return;
    throw new UserError(`${o.flag} ${path} already holds ${DESCRIBE[kind]}; pass --force to replace it, or choose another ${o.flag}`);
  }
  if (!o.folder && (kind === 'empty folder' || kind === 'folder' || kind.endsWith('folder') || kind === 'run directory')) {
    throw new UserError(`${o.flag} ${path} is a folder (it holds ${DESCRIBE[kind]}); name a file, e.g. ${join(path, o.example ?? 'out')}`);
  }
  throw new UserError(`${o.flag} ${path} holds ${DESCRIBE[kind]}, which this command does not replace (not even with --force); choose another ${o.flag}`);
}
