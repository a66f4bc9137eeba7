/**
 * Seeded, splittable random numbers.
 *
 * A stream is named by a 64-bit key. `fork(name)` and `at(index)` derive child keys by hashing
 * (SplitMix64 finaliser), so sample i of a stream is the same no matter how many workers render it
 * or in which order, and a resumed run can re-derive any stream from (seed, names, counters) without
 * saving generator state. Draws within one stream come from xoshiro128**, which is all 32-bit integer
 * arithmetic and therefore fast in JavaScript; only key derivation uses BigInt.
 *
 * Typical use: `createRng(seed).fork('dropout').at(step)` gives the dropout stream of one optimizer
 * step; `createRng(seed).fork('source-train').at(i)` gives the stream that renders sample i.
 */

const MASK64 = (1n << 64n) - 1n;

function splitmix64(z: bigint): bigint {
  z = (z + 0x9e3779b97f4a7c15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

const nameHashes = new Map<string, bigint>();
/** FNV-1a over the UTF-8 bytes, then a SplitMix64 round to spread the bits (memoised: names repeat per sample). */
function hashString(s: string): bigint {
  const known = nameHashes.get(s);
  if (known !== undefined) return known;
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(s)) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & MASK64;
  }
  const hash = splitmix64(h);
  if (nameHashes.size < 4096) nameHashes.set(s, hash);
  return hash;
}

function derive(key: bigint, tag: bigint): bigint {
  return splitmix64(splitmix64(key) ^ tag);
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo) {
    const q = Math.sqrt(-2 * Math.log(p));
    return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  if (p > 1 - lo) return -normalQuantile(1 - p);
  const q = p - 0.5;
  const r = q * q;
  return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

let normalTable: Float32Array | undefined;
/** 65536 equiprobable normal quantiles: a per-pixel noise draw becomes one table lookup. */
function getNormalTable(): Float32Array {
  if (!normalTable) {
    normalTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) normalTable[i] = normalQuantile((i + 0.5) / 65536);
  }
  return normalTable;
}

/** log(k!) for the Poisson sampler: exact table for small k, Stirling series beyond. */
const LOG_FACT_TABLE = (() => {
  const t = new Float64Array(64);
  for (let k = 1; k < 64; k++) t[k] = t[k - 1] + Math.log(k);
  return t;
})();
function logFactorial(k: number): number {
  if (k < 64) return LOG_FACT_TABLE[k];
  const x = k + 1;
  return (x - 0.5) * Math.log(x) - x + 0.5 * Math.log(2 * Math.PI) + 1 / (12 * x) - 1 / (360 * x * x * x);
}

export type Seed = number | string;

export class Rng {
  /** The 64-bit key naming this stream; equal keys give equal draws. */
  readonly key: bigint;
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spareNormal: number | undefined;

  constructor(key: bigint) {
    this.key = key & MASK64;
    const a = splitmix64(this.key);
    const b = splitmix64(a);
    this.s0 = Number(a & 0xffffffffn) | 0;
    this.s1 = Number(a >> 32n) | 0;
    this.s2 = Number(b & 0xffffffffn) | 0;
    this.s3 = Number(b >> 32n) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // xoshiro's one forbidden state
  }

  /** An independent child stream named `name` (same parent key and name → same stream). */
  fork(name: string): Rng {
    return new Rng(derive(this.key, hashString(name)));
  }

  /** The child stream for a counter (sample index, step, epoch): a non-negative safe integer. */
  at(index: number): Rng {
    if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`Rng.at: index must be a non-negative integer, got ${index}`);
    return new Rng(derive(this.key, splitmix64(BigInt(index) ^ 0x5851f42d4c957f2dn)));
  }

  /** Uniform 32-bit unsigned integer (xoshiro128**). */
  uint32(): number {
    const s1 = this.s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [lo, hi] inclusive (bias below 2^-32 · range, negligible for ranges used here). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Normal draw (Box–Muller, exact up to float rounding). */
  normal(mean = 0, sd = 1): number {
    if (this.spareNormal !== undefined) {
      const z = this.spareNormal;
      this.spareNormal = undefined;
      return mean + sd * z;
    }
    const u = 1 - this.next(); // (0, 1]: log stays finite
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return mean + sd * r * Math.cos(2 * Math.PI * v);
  }

  /** Poisson draw: multiplication method below λ=10, Hörmann's PTRS transformed rejection above. */
  poisson(lambda: number): number {
    if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new RangeError(`Rng.poisson: lambda must be finite and >= 0, got ${lambda}`);
    if (lambda === 0) return 0;
    if (lambda < 10) {
      const limit = Math.exp(-lambda);
      let k = 0;
      let p = this.next();
      while (p > limit) {
        k++;
        p *= this.next();
      }
      return k;
    }
    const slam = Math.sqrt(lambda);
    const loglam = Math.log(lambda);
    const b = 0.931 + 2.53 * slam;
    const a = -0.059 + 0.02483 * b;
    const invalpha = 1.1239 + 1.1328 / (b - 3.4);
    const vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
      const u = this.next() - 0.5;
      const v = this.next();
      const us = 0.5 - Math.abs(u);
      const k = Math.floor((2 * a / us + b) * u + lambda + 0.43);
      if (us >= 0.07 && v <= vr) return k;
      if (k < 0 || (us < 0.013 && v > us)) continue;
      if (Math.log(v) + Math.log(invalpha) - Math.log(a / (us * us) + b) <= -lambda + k * loglam - logFactorial(k)) return k;
    }
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[] | Uint32Array): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = items[i];
      items[i] = items[j];
      items[j] = t as never;
    }
  }

  /** A uniformly random permutation of 0..n-1. */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    this.shuffle(p);
    return p;
  }

  /** Fills `out` with uniforms in [0, 1). */
  fillUniform(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = this.uint32() / 4294967296;
    return out;
  }

  /**
   * Inverted-dropout mask: each entry is 0 with probability `p`, else 1/(1-p), so the expected value is 1.
   * Compares raw 32-bit draws against a threshold: no float work per element.
   */
  dropoutMask(out: Float32Array, p: number): Float32Array {
    if (!(p >= 0 && p < 1)) throw new RangeError(`Rng.dropoutMask: p must be in [0, 1), got ${p}`);
    const threshold = Math.floor(p * 4294967296);
    const keep = 1 / (1 - p);
    for (let i = 0; i < out.length; i++) out[i] = this.uint32() < threshold ? 0 : keep;
    return out;
  }

  /**
   * Adds N(0, sd²) noise to every entry. Each draw is a lookup into 65536 equiprobable normal quantiles
   * (two draws per 32-bit word), so tails are cut at ±4.3 sd: right for pixel noise, where this is
   * the hot loop, not for statistics that depend on extreme tails (use `normal()` there).
   */
  addNormalNoise(out: Float32Array, sd: number): Float32Array {
    const table = getNormalTable();
    const n = out.length;
    let i = 0;
    for (; i + 1 < n; i += 2) {
      const r = this.uint32();
      out[i] += sd * table[r & 0xffff];
      out[i + 1] += sd * table[r >>> 16];
    }
    if (i < n) out[i] += sd * table[this.uint32() & 0xffff];
    return out;
  }
}

/** The root stream of a run. A number seed must be a safe integer; a string seed is hashed. */
export function createRng(seed: Seed): Rng {
  if (typeof seed === 'string') return new Rng(hashString(seed));
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer or a string, got ${seed}`);
  return new Rng(splitmix64(BigInt.asUintN(64, BigInt(seed))));
}
