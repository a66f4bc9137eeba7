/**
 * Synthetic domain shifts with known labels on both sides, for measuring DANN (docs/da-parity.md):
 * each shift renders labelled source and target images from the same factors, so target error is
 * measurable. Images are float32 NCHW in [0, 1]; every sample is a pure function of (seed, split, index).
 */
import { createRng, type Rng } from '../rng.ts';
import type { BatchSource, ImageBatch } from '../training/types.ts';
import { spritesShift } from './shift-sprites.ts';
import { cellsShift } from './shift-cells.ts';
import type { Domain } from '../onnx/manifest.ts';

export interface Shift {
  name: string;
  /** One line: what changes between the domains. */
  describe: string;
  /** Regression outputs, each in [0, 1]. */
  outputs: readonly string[];
  /** Renders one image (3 planes of size², written at `out`) and returns its labels. */
  render(domain: Domain, rng: Rng, size: number, out: Float32Array): number[];
}

export const SHIFTS: Record<string, Shift> = { sprites: spritesShift, cells: cellsShift };

export interface LabelledArrays {
  images: Float32Array;
  labels: Float32Array;
  count: number;
  size: number;
}

/** `count` images of one domain; sample i depends only on (seed, split, i). */
export function renderSplit(shift: Shift, domain: Domain, split: string, count: number, size: number, seed: number): LabelledArrays {
  const plane = 3 * size * size;
  const images = new Float32Array(count * plane);
  const labels = new Float32Array(count * shift.outputs.length);
  const root = createRng(seed).fork(`${shift.name}:${domain}:${split}`);
  for (let i = 0; i < count; i++) {
    const y = shift.render(domain, root.at(i), size, images.subarray(i * plane, (i + 1) * plane));
    labels.set(y, i * y.length);
  }
  return { images, labels, count, size };
}

/**
 * In-memory arrays as a BatchSource with FolderSource's order: pass p of epoch e is a permutation drawn
 * from (seed, stream, e, p), so a batch running past the end continues with a fresh shuffle.
 */
export class ArraySource implements BatchSource {
  readonly labelled: boolean;
  readonly length: number;
  private readonly shuffle: Rng | undefined;
  private epoch = 0;
  private cursor = 0;
  private perm?: { pass: number; order: Uint32Array };

  constructor(
    readonly name: string,
    private readonly data: LabelledArrays,
    o: { seed: number; shuffle?: boolean; labelled?: boolean; outputNames?: string[] },
  ) {
    this.length = data.count;
    this.labelled = o.labelled ?? true;
    this.outputNames = o.outputNames;
    this.shuffle = o.shuffle === false ? undefined : createRng(o.seed).fork(`array:${name}`);
  }

  readonly outputNames?: string[];

  startEpoch(epoch: number): void {
    this.epoch = epoch;
    this.cursor = 0;
    this.perm = undefined;
  }

  get position(): number {
    return this.cursor;
  }

  seek(position: number): void {
    this.cursor = position;
  }

  /** Index of the sample served at `position` of the current epoch. */
  indexAt(position: number): number {
    const pass = Math.floor(position / this.length);
    const offset = position - pass * this.length;
    if (!this.shuffle) return offset;
    if (this.perm?.pass !== pass) this.perm = { pass, order: this.shuffle.at(this.epoch).at(pass).permutation(this.length) };
    return this.perm.order[offset];
  }

  async nextBatch(count: number): Promise<ImageBatch> {
    const plane = 3 * this.data.size * this.data.size;
    const k = this.data.labels.length / this.data.count;
    const images = new Float32Array(count * plane);
    const labels = this.labelled ? new Float32Array(count * k) : undefined;
    const ids: string[] = [];
    for (let r = 0; r < count; r++) {
      const i = this.indexAt(this.cursor++);
      images.set(this.data.images.subarray(i * plane, (i + 1) * plane), r * plane);
      labels?.set(this.data.labels.subarray(i * k, (i + 1) * k), r * k);
      ids.push(String(i));
    }
    return { images, count, size: this.data.size, labels, ids };
  }

  async close(): Promise<void> {}
}
