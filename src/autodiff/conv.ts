/**
 * Convolution backward as standard ONNX ops. Which formulation runs is chosen per layer geometry in
 * one place (chooseConvRecipes), from the per-layer measurements in docs/conv-backward.md;
 * every recipe is exact, so the choice only changes speed.
 */
import { UserError } from '../errors.ts';
import { type GradContext } from './context.ts';

export interface ConvGeometry {
  C: number; H: number; W: number;
  K: number; kh: number; kw: number;
  OH: number; OW: number;
  strides: [number, number];
  dilations: [number, number];
  /** [top, left, bottom, right] */
  pads: [number, number, number, number];
}

export type DxRecipe = 'flipped-conv' | 'conv-transpose' | 'single-window';
export type DwRecipe = 'per-tap-matmul' | 'dilated-conv' | 'single-window' | 'im2col-gemm' | 'gathered-im2col';

/** The per-layer choice. Measured winners: flip for stride 1, ConvTranspose for strided, one MatMul for 1×1 maps. */
export function chooseConvRecipes(geo: ConvGeometry): { dx: DxRecipe; dw: DwRecipe } {
  return convRecipePolicy.choose(geo);
}

/** Floats of gathered im2col rows per image up to which dW gathers: ResNet34's layer1 at 256 px holds 2.36M, the largest measured. */
export const GATHERED_IM2COL_LIMIT = 2_500_000;

/** Replaceable so bench/ can time every recipe on the same graphs; the default is the measured best. */
export const convRecipePolicy = { choose: defaultRecipes };

function defaultRecipes(geo: ConvGeometry): { dx: DxRecipe; dw: DwRecipe } {
  const singleOut = geo.OH === 1 && geo.OW === 1 && geo.dilations[0] === 1 && geo.dilations[1] === 1;
  const unitStride = geo.strides[0] === 1 && geo.strides[1] === 1;
  const flipPads = flippedPads(geo);
  const dx: DxRecipe = singleOut ? 'single-window' : unitStride && flipPads.every((p) => p >= 0) ? 'flipped-conv' : 'conv-transpose';
  // Few input channels (the RGB stem): per-tap MatMuls would be kh·kw skinny products; a dilated Conv wins.
  // Few output channels: each thread of a per-tap product packs all of X for little work; one gathered
  // im2col GEMM splits its wide side instead (docs/conv-backward.md). Its rows are transient but hold
  // every tap at once, so large maps keep the per-tap form, whose transient is one tap.
  const gatheredPerImage = geo.OH * geo.OW * geo.kh * geo.kw * geo.C;
  const gathered = geo.K <= 256 && geo.kh * geo.kw > 1 && gatheredPerImage <= GATHERED_IM2COL_LIMIT;
  const dw: DwRecipe = singleOut ? 'single-window' : geo.C <= 4 ? 'dilated-conv' : gathered ? 'gathered-im2col' : 'per-tap-matmul';
  return { dx, dw };
}

function flippedPads(geo: ConvGeometry): number[] {
  const [dh, dw] = geo.dilations;
  const [pt, pl, pb, pr] = geo.pads;
  return [dh * (geo.kh - 1) - pt, dw * (geo.kw - 1) - pl, dh * (geo.kh - 1) - pb, dw * (geo.kw - 1) - pr];
}

export function convGeometry(c: GradContext): ConvGeometry {
  const n = c.node;
  const x = c.shape(c.I(0));
  const w = c.staticShape(c.I(1));
  const y = c.shape(c.O(0));
  if (x.length !== 4) throw new UserError(`node ${n.name} (Conv): only 2-D convolutions (4-D inputs) have a gradient rule; got rank ${x.length}`);
  const autoPad = n.attrs.auto_pad && 's' in n.attrs.auto_pad ? n.attrs.auto_pad.s : 'NOTSET';
  const [, C, H, W] = x;
  const [, , OH, OW] = y;
  if ([C, H, W, OH, OW].some((d) => typeof d !== 'number')) throw new UserError(`node ${n.name} (Conv): channel and spatial sizes must be fixed (got input [${x}]); only the batch may vary`);
  const strides = (c.ints('strides') ?? [1, 1]) as [number, number];
  const dilations = (c.ints('dilations') ?? [1, 1]) as [number, number];
  let pads = (c.ints('pads') ?? [0, 0, 0, 0]) as [number, number, number, number];
  if (autoPad !== 'NOTSET' && autoPad !== 'VALID') {
    const total = [0, 1].map((k) => Math.max(0, ((k ? OW : OH) as number - 1) * strides[k] + dilations[k] * (w[2 + k] - 1) + 1 - ((k ? W : H) as number)));
    const lo = total.map((t) => (autoPad === 'SAME_UPPER' ? Math.floor(t / 2) : Math.ceil(t / 2)));
    pads = [lo[0], lo[1], total[0] - lo[0], total[1] - lo[1]];
  } else if (autoPad === 'VALID') pads = [0, 0, 0, 0];
  return { C: C as number, H: H as number, W: W as number, K: w[0], kh: w[2], kw: w[3], OH: OH as number, OW: OW as number, strides, dilations, pads };
}

export function convInputGrad(c: GradContext, geo: ConvGeometry, recipe: DxRecipe): string {
  const [go, w] = [c.GO(), c.I(1)];
  const { C, H, W, K, kh, kw, OH, OW, strides, dilations, pads } = geo;
  if (recipe === 'flipped-conv') {
    // dX = dY ⊛ flip(Wᵀ): the flip is an exact permutation MatMul (a negative-step Slice is 5× slower on ORT).
    let wt: string;
    if (kh * kw === 1) wt = c.op('Transpose', [w], { perm: [1, 0, 2, 3] });
    else {
      const taps = kh * kw;
      const perm = new Float32Array(taps * taps);
      for (let t = 0; t < taps; t++) perm[t * taps + (taps - 1 - t)] = 1;
      const flat = c.op('Reshape', [w, c.b.ints([K * C, taps])]);
      const flipped = c.op('MatMul', [flat, c.b.constant('float', perm, [taps, taps])]);
      wt = c.op('Transpose', [c.op('Reshape', [flipped, c.b.ints([K, C, kh, kw])])], { perm: [1, 0, 2, 3] });
    }
    return c.op('Conv', [go, wt], { kernel_shape: [kh, kw], dilations: [...dilations], strides: [1, 1], pads: flippedPads(geo) });
  }
  if (recipe === 'conv-transpose') {
    const outPad = [0, 1].map((k) => (k ? W : H) - ((k ? OW : OH) - 1) * strides[k] - dilations[k] * ((k ? kw : kh) - 1) - 1 + pads[k] + pads[k + 2]);
    return c.op('ConvTranspose', [go, w], {
      kernel_shape: [kh, kw], strides: [...strides], dilations: [...dilations], pads: [...pads], output_padding: outPad,
    });
  }
  // One output position: dX's window is dY·W reshaped, then cropped/padded into place.
  const window = c.op('MatMul', [c.op('Reshape', [go, c.b.ints([-1, K])]), c.op('Reshape', [w, c.b.ints([K, C * kh * kw])])]);
  const shaped = c.op('Reshape', [window, c.b.ints([-1, C, kh, kw])]);
  const [pt, pl] = pads;
  return c.op('Pad', [shaped, c.b.ints([0, 0, -pt, -pl, 0, 0, H - (kh - pt), W - (kw - pl)])]);
}

export function convWeightGrad(c: GradContext, geo: ConvGeometry, recipe: DwRecipe): string {
  const [x, go] = [c.I(0), c.GO()];
  const { C, K, kh, kw, OH, OW, strides, dilations, pads } = geo;
  const padded = pads.some((p) => p !== 0) ? c.op('Pad', [x, c.b.ints([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]])]) : x;
  if (recipe === 'single-window') {
    const window = c.op('Slice', [padded, c.b.ints([0, 0]), c.b.ints([kh, kw]), c.b.ints([2, 3])]);
    const cols = c.op('Reshape', [window, c.b.ints([-1, C * kh * kw])]);
    const dw = c.op('Gemm', [c.op('Reshape', [go, c.b.ints([-1, K])]), cols], { transA: 1 });
    return c.op('Reshape', [dw, c.b.ints([K, C, kh, kw])]);
  }
  if (recipe === 'im2col-gemm') {
    // im2col by a depthwise Conv with a constant one-hot kernel (channel c·T+t copies tap t of channel c),
    // so stride, padding and dilation come from the Conv itself; then one GEMM over batch and positions.
    const taps = kh * kw;
    const onehot = new Float32Array(C * taps * taps);
    for (let ch = 0; ch < C; ch++) for (let t = 0; t < taps; t++) onehot[(ch * taps + t) * taps + t] = 1;
    const cols = c.op('Conv', [x, c.b.constant('float', onehot, [C * taps, 1, kh, kw])], {
      group: C, kernel_shape: [kh, kw], strides: [...strides], dilations: [...dilations], pads: [...pads],
    });
    const colsT = c.op('Reshape', [c.op('Transpose', [cols], { perm: [1, 0, 2, 3] }), c.b.ints([C * taps, -1])]);
    const d = c.op('Reshape', [c.op('Transpose', [go], { perm: [1, 0, 2, 3] }), c.b.ints([K, -1])]);
    return c.op('Reshape', [c.op('Gemm', [d, colsT], { transB: 1 }), c.b.ints([K, C, kh, kw])]);
  }
  if (recipe === 'dilated-conv') {
    // dW[k,c] = X[c] ⋆ dY[k] over the batch: a Conv with the batch as channels, stride↔dilation swapped.
    const xt = c.op('Transpose', [x], { perm: [1, 0, 2, 3] });
    const gt = c.op('Transpose', [go], { perm: [1, 0, 2, 3] });
    const full = c.op('Conv', [xt, gt], { kernel_shape: [OH, OW], strides: [...dilations], dilations: [...strides], pads: [...pads] });
    const cut = c.op('Slice', [full, c.b.ints([0, 0]), c.b.ints([kh, kw]), c.b.ints([2, 3])]);
    return c.op('Transpose', [cut], { perm: [1, 0, 2, 3] });
  }
  // Both GEMM recipes multiply dY as [K, N·P] by rows of X laid out NHWC once.
  const xh = c.op('Transpose', [padded], { perm: [0, 2, 3, 1] });
  const d = c.op('Reshape', [c.op('Transpose', [go], { perm: [1, 0, 2, 3] }), c.b.ints([K, -1])]);
  if (recipe === 'gathered-im2col') {
    // im2col as one Gather of NHWC rows ([N·P, taps·C]), then one GEMM whose wide side is taps·C: ORT's
    // GEMM threads split that side, where per-tap products (M·N = K·C) make every thread pack all of X.
    const [Hp, Wp] = [geo.H + pads[0] + pads[2], geo.W + pads[1] + pads[3]];
    const idx: number[] = [];
    for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
      for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) idx.push((oh * strides[0] + i * dilations[0]) * Wp + ow * strides[1] + j * dilations[1]);
    }
    const rows = c.op('Reshape', [xh, c.b.ints([0, Hp * Wp, C])]);
    const cols = c.op('Reshape', [c.op('Gather', [rows, c.b.constant('int64', idx, [OH * OW, kh * kw])], { axis: 1 }), c.b.ints([-1, kh * kw * C])]);
    const dw = c.op('Reshape', [c.op('MatMul', [d, cols]), c.b.ints([K, kh * kw, C])]);
    return c.op('Reshape', [c.op('Transpose', [dw], { perm: [0, 2, 1] }), c.b.ints([K, C, kh, kw])]);
  }
  // Per tap: dW[:,:,i,j] = dY[K, N·P] · X_shifted[N·P, C].
  const taps: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const [h0, w0] = [i * dilations[0], j * dilations[1]];
      const ends = [h0 + strides[0] * (OH - 1) + 1, w0 + strides[1] * (OW - 1) + 1];
      const shifted = c.op('Slice', [xh, c.b.ints([h0, w0]), c.b.ints(ends), c.b.ints([1, 2]), c.b.ints([...strides])]);
      const prod = c.op('MatMul', [d, c.op('Reshape', [shifted, c.b.ints([-1, C])])]);
      taps.push(kh * kw === 1 ? prod : c.op('Unsqueeze', [prod, c.b.ints([2])]));
    }
  }
  const stacked = taps.length === 1 ? taps[0] : c.op('Concat', taps, { axis: 2 });
  return c.op('Reshape', [stacked, c.b.ints([K, C, kh, kw])]);
}

/**
 * Grouped and depthwise convolutions (W is [K, C/G, kh, kw]). dX: for unit stride, a grouped Conv of
 * dY with each group's Wᵀ flipped; otherwise ConvTranspose, which takes the same groups.
 */
export function groupedConvInputGrad(c: GradContext, geo: ConvGeometry, groups: number): string {
  const [go, w] = [c.GO(), c.I(1)];
  const { C, H, W, K, kh, kw, OH, OW, strides, dilations, pads } = geo;
  const flipPads = flippedPads(geo);
  if (strides[0] !== 1 || strides[1] !== 1 || flipPads.some((p) => p < 0)) {
    const outPad = [0, 1].map((k) => (k ? W : H) - ((k ? OW : OH) - 1) * strides[k] - dilations[k] * ((k ? kw : kh) - 1) - 1 + pads[k] + pads[k + 2]);
    return c.op('ConvTranspose', [go, w], {
      group: groups, kernel_shape: [kh, kw], strides: [...strides], dilations: [...dilations], pads: [...pads], output_padding: outPad,
    });
  }
  const [kg, cg, taps] = [K / groups, C / groups, kh * kw];
  const perm = new Float32Array(taps * taps);
  for (let t = 0; t < taps; t++) perm[t * taps + (taps - 1 - t)] = 1;
  const flipped = taps === 1 ? w : c.op('MatMul', [c.op('Reshape', [w, c.b.ints([K * cg, taps])]), c.b.constant('float', perm, [taps, taps])]);
  // [G, K/G, C/G, taps] → [G, C/G, K/G, taps]: each group's transpose, groups kept in order.
  const wt = c.op('Reshape', [c.op('Transpose', [c.op('Reshape', [flipped, c.b.ints([groups, kg, cg, taps])])], { perm: [0, 2, 1, 3] }), c.b.ints([C, kg, kh, kw])]);
  return c.op('Conv', [go, wt], { group: groups, kernel_shape: [kh, kw], dilations: [...dilations], strides: [1, 1], pads: flipPads });
}

/**
 * dW of a grouped Conv as one grouped Conv over the batch: per group g, dW[g·K/G + k, c] = Σₙ X[n, g·C/G + c] ⋆ dY[n, g·K/G + k].
 * The input is X as [C/G, G·N, H, W] (channels ordered group, image), the kernel dY as [K, N, OH, OW];
 * stride and dilation swap roles, as in the ungrouped dilated-conv recipe.
 */
export function groupedConvWeightGrad(c: GradContext, geo: ConvGeometry, groups: number): string {
  const [x, go] = [c.I(0), c.GO()];
  const { C, H, W, K, kh, kw, OH, OW, strides, dilations, pads } = geo;
  const [kg, cg] = [K / groups, C / groups];
  const xr = c.op('Reshape', [c.op('Transpose', [c.op('Reshape', [x, c.b.ints([-1, groups, cg, H, W])])], { perm: [2, 1, 0, 3, 4] }), c.b.ints([cg, -1, H, W])]);
  const gr = c.op('Reshape', [c.op('Transpose', [c.op('Reshape', [go, c.b.ints([-1, groups, kg, OH, OW])])], { perm: [1, 2, 0, 3, 4] }), c.b.ints([K, -1, OH, OW])]);
  const full = c.op('Conv', [xr, gr], { group: groups, kernel_shape: [OH, OW], strides: [...dilations], dilations: [...strides], pads: [...pads] });
  const cut = c.op('Slice', [full, c.b.ints([0, 0]), c.b.ints([kh, kw]), c.b.ints([2, 3])]);
  return c.op('Transpose', [cut], { perm: [1, 0, 2, 3] });
}
