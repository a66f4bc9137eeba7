/**
 * Range checks of numeric flags, run before any work starts. The upper bounds keep a typo from
 * reaching an allocation (a 100000 px image is 120 GB per batch of one) or a thread pool; they are
 * far above any sensible value.
 */
import { UserError } from '../errors.ts';

export interface Range {
  min: number;
  max: number;
  integer?: boolean;
  /** The bound is exclusive at min (e.g. a learning rate above 0). */
  minExclusive?: boolean;
}

const int = (min: number, max: number): Range => ({ min, max, integer: true });

/** Bounds shared by every command that takes the flag. */
export const RANGES = {
  'image-size': int(16, 2048),
  size: int(8, 2048),
  epochs: int(1, 100_000),
  'freeze-epochs': int(0, 100_000),
  'batch-size': int(1, 4096),
  'source-size': int(1, 100_000_000),
  'val-size': int(1, 10_000_000),
  'lr-mult': { min: 0, max: 1e6, minExclusive: true },
  'lambda-domain': { min: 0, max: 1e6 },
  seed: int(0, Number.MAX_SAFE_INTEGER),
  threads: int(1, 1024),
  'sim-workers': int(0, 256),
  'source-timeout': { min: 0, max: 86_400, minExclusive: true },
  train: int(1, 10_000_000),
  val: int(1, 10_000_000),
  'source-val': int(0, 10_000_000),
  'lr-find-batches': int(5, 100_000),
} satisfies Record<string, Range>;

function describe(r: Range): string {
  const kind = r.integer ? 'an integer' : 'a number';
  return r.minExclusive ? `${kind} above ${r.min} and at most ${r.max}` : `${kind} from ${r.min} to ${r.max}`;
}

/** Throws a one-line UserError naming the flag and its range when `value` is outside it. */
export function checkRange(flag: string, value: unknown, range: Range): void {
  const v = Number(value);
  const ok = Number.isFinite(v) && (range.minExclusive ? v > range.min : v >= range.min) && v <= range.max && (!range.integer || Number.isInteger(v));
  if (!ok) throw new UserError(`--${flag} ${value}: must be ${describe(range)}`);
}

/** Checks every flag of `args` that has a range in RANGES (flags not given are skipped). */
export function checkRanges(args: Record<string, unknown>, flags: (keyof typeof RANGES)[]): void {
  for (const flag of flags) if (args[flag] !== undefined) checkRange(flag, args[flag], RANGES[flag]);
}
