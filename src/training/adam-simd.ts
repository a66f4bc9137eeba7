/**
 * The Adam update of adam.ts's adamKernel as a WebAssembly SIMD loop, 4 floats per iteration, with
 * the same rounding at every step (docs/optimizer-simd.md): IEEE float32 division and square
 * root of float32 operands equal the float64 operation rounded once to float32 (53 ≥ 2·24 + 2 bits),
 * so `Math.fround(a / b)` becomes f32x4.div, and the two float64-accumulated fused multiply-adds
 * stay in float64 (f64x2 on each half). The result is bit-identical to adamKernel's.
 *
 * p, g, m and v must live in one shared WebAssembly.Memory (adamBuffers): a module reads one memory.
 */

/** `simdAdam(p, g, m, v, quads, decay, mom, damp1, sqrMom, damp2, debias2, eps, negStep)`: byte addresses, 4-float groups, float32 coefficients. */
export type SimdAdam = (p: number, g: number, m: number, v: number, quads: number, ...coeffs: number[]) => void;

const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const section = (id: number, body: number[]) => [id, ...uleb(body.length), ...body];
const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
const name = (s: string) => [...uleb(s.length), ...Buffer.from(s)];

// Opcodes (WebAssembly core spec 2.0, SIMD prefix 0xfd).
const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
const simd = (op: number) => [0xfd, ...uleb(op)];
const get = (i: number) => [0x20, ...uleb(i)];
const set = (i: number) => [0x21, ...uleb(i)];
const load = [...simd(0x00), 0, 0];
const store = [...simd(0x0b), 0, 0];
const f32x4Splat = simd(0x13), f64x2Splat = simd(0x14);
const demote = simd(0x5e), promoteLow = simd(0x5f);
const f32Sqrt = simd(0xe3), f32Add = simd(0xe4), f32Mul = simd(0xe6), f32Div = simd(0xe7);
const f64Add = simd(0xf0), f64Mul = simd(0xf2);
const shuffle = (lanes: number[]) => [...simd(0x0d), ...lanes];
const HIGH_HALF = shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
const JOIN_LOW_HALVES = shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);

// Parameters 0-4: p g m v quads (i32); 5-12: decay mom damp1 sqrMom damp2 debias2 eps negStep (f32).
const [P, G, M, Vp, N] = [0, 1, 2, 3, 4];
const coeff = (k: number) => 5 + k;
// v128 locals from 13 on.
const [DECAY, MOM, DAMP1D, SQR, DAMP2, DEB2, EPS, NEG, GV, A, B, MI, VI] = Array.from({ length: 13 }, (_, k) => 13 + k);

/** float32(float64(a) + float64(b)·float64(c)) on 4 lanes, a, b, c float32x4 in locals (c may be a float64x2 splat: then pass cIsF64). */
function fusedHalves(a: number, b: number, c: number, cIsF64: boolean): number[] {
  const half = (high: boolean) => {
    const widen = (l: number) => [...get(l), ...(high ? [...get(l), ...HIGH_HALF] : []), ...promoteLow];
    return [...widen(a), ...widen(b), ...(cIsF64 ? get(c) : widen(c)), ...f64Mul, ...f64Add, ...demote];
  };
  return [...half(false), ...half(true), ...JOIN_LOW_HALVES];
}

const advance = (local: number, by: number) => [...get(local), 0x41, ...uleb(by), 0x6a, ...set(local)]; // i32.const, i32.add

const body = [
  ...vec([[13, V128]]), // 13 v128 locals
  ...get(coeff(0)), ...f32x4Splat, ...set(DECAY),
  ...get(coeff(1)), ...f32x4Splat, ...set(MOM),
  ...get(coeff(2)), 0xbb, ...f64x2Splat, ...set(DAMP1D), // f64.promote_f32
  ...get(coeff(3)), ...f32x4Splat, ...set(SQR),
  ...get(coeff(4)), ...f32x4Splat, ...set(DAMP2),
  ...get(coeff(5)), ...f32x4Splat, ...set(DEB2),
  ...get(coeff(6)), ...f32x4Splat, ...set(EPS),
  ...get(coeff(7)), ...f32x4Splat, ...set(NEG),
  0x02, 0x40, 0x03, 0x40, // block, loop
  ...get(N), 0x45, 0x0d, 1, // br_if (quads == 0) out
  ...get(G), ...load, ...set(GV),
  // m ← float32(float32(m·mom) + damp1·g)
  ...get(M), ...load, ...get(MOM), ...f32Mul, ...set(A),
  ...fusedHalves(A, GV, DAMP1D, true), ...set(MI),
  ...get(M), ...get(MI), ...store,
  // v ← float32(float32(v·sqrMom) + float32(damp2·g)·g)
  ...get(Vp), ...load, ...get(SQR), ...f32Mul, ...set(A),
  ...get(GV), ...get(DAMP2), ...f32Mul, ...set(B),
  ...fusedHalves(A, B, GV, false), ...set(VI),
  ...get(Vp), ...get(VI), ...store,
  // p ← p·decay + (negStep·m) / (sqrt(v / debias2) + eps), each op rounded to float32
  ...get(P),
  ...get(P), ...load, ...get(DECAY), ...f32Mul,
  ...get(NEG), ...get(MI), ...f32Mul,
  ...get(VI), ...get(DEB2), ...f32Div, ...f32Sqrt, ...get(EPS), ...f32Add,
  ...f32Div, ...f32Add, ...store,
  ...advance(P, 16), ...advance(G, 16), ...advance(M, 16), ...advance(Vp, 16),
  ...get(N), 0x41, 1, 0x6b, ...set(N), // quads -= 1
  0x0c, 0, 0x0b, 0x0b, // br loop, end loop, end block
  0x0b, // end function
];

const moduleBytes = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  ...section(1, vec([[0x60, ...vec([[I32], [I32], [I32], [I32], [I32], ...Array.from({ length: 8 }, () => [F32])]), 0]])),
  // import env.memory: shared, min 0, max 65536 pages
  ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x03, 0, ...uleb(65536)]])),
  ...section(3, vec([[0]])),
  ...section(7, vec([[...name('adam'), 0x00, 0]])),
  ...section(10, vec([[...uleb(body.length), ...body]])),
]);

let compiled: WebAssembly.Module | undefined;

/** The compiled module, or undefined where this runtime lacks WebAssembly SIMD. */
export function simdModule(): WebAssembly.Module | undefined {
  if (compiled === undefined && WebAssembly.validate(moduleBytes)) compiled = new WebAssembly.Module(moduleBytes);
  return compiled;
}

export function instantiateSimdAdam(memory: WebAssembly.Memory, module = simdModule()): SimdAdam | undefined {
  if (!module) return undefined;
  return new WebAssembly.Instance(module, { env: { memory } }).exports.adam as SimdAdam;
}
