/**
 * The gradient-rule table: one entry per op, each returning the gradient of every input (undefined
 * where an input needs none). Read an entry and you have the whole rule, in the spirit of PyTorch's
 * derivatives.yaml and ONNX Runtime's gradient_builder.cc. Every entry has a finite-difference test.
 */
import { UserError } from '../errors.ts';
import { DataType } from '../onnx/proto.ts';
import { type GradContext, type GradRule } from './context.ts';
import { chooseConvRecipes, convGeometry, convInputGrad, convWeightGrad, groupedConvInputGrad, groupedConvWeightGrad } from './conv.ts';

/** Marker ops of the private domain: differentiated here, lowered to plain ai.onnx afterwards. */
export const MARKER_DOMAIN = 'ort_dann';

const passThrough: GradRule = (c) => [c.GO()];
const reshapeBack: GradRule = (c) => [c.reshapeLike(c.GO(), c.I(0))];
const mul = (c: GradContext, a: string, b: string) => c.op('Mul', [a, b]);

/** Gradient of a broadcasting binary op: d(out)/d(in_i) as a full-size tensor, then summed back. */
function binary(c: GradContext, local: [(() => string) | undefined, (() => string) | undefined]): (string | undefined)[] {
  const out = c.outShape();
  return local.map((f, i) => (c.needs(i) && f ? c.unbroadcast(f(), out, c.I(i)) : undefined));
}

/** Per-channel [C] vector → [1, C, 1, …] for broadcasting against an NC… tensor of rank r. */
function channelView(c: GradContext, v: string, rank: number): string {
  return rank <= 2 ? v : c.op('Unsqueeze', [v, c.b.ints(Array.from({ length: rank - 2 }, (_, k) => k + 1))]);
}

function channelAxes(rank: number): number[] {
  return [0, ...Array.from({ length: rank - 2 }, (_, k) => k + 2)];
}

/**
 * Batch-statistics BatchNormalization backward: dX = dY·k1 + (X−mean)·k2 + k3 with per-channel k's, so only two full
 * reductions touch dY. It works on the centred X, so no term subtracts two large nearly equal sums. Inputs 3–6
 * (mean, variance, X − mean, elements per channel; see lower.ts) are functions of X whose derivative the formula
 * already holds.
 */
const batchNormTrain: GradRule = (c) => {
  const [x, scale, , , variance, centred, m] = c.node.inputs;
  const rank = c.rank(x);
  const axes = channelAxes(rank);
  const invstd = c.op('Reciprocal', [c.op('Sqrt', [c.op('Add', [variance, c.b.scalar(c.float('epsilon', 1e-5))])])]);
  const { dx, dscale, db } = fusedBatchNormBackward(c, { scale, invstd, centred, m, needsX: c.needs(0) },
    (v) => c.reduceSum(v, axes, false), (k) => channelView(c, k, rank));
  return [dx, c.needs(1) ? dscale : undefined, c.needs(2) ? db : undefined];
};

/**
 * Per-domain batch-statistics BatchNormalization backward (lower.ts, lowerDomainBatchNorm): the rule above once per
 * domain. The per-row channel sums of dY and dY·(X−mean) are summed by domain through the [2, N] row-to-domain matrix
 * D, the per-domain k's go back to rows through Dᵀ. Input 0 is the forward's plain-op result and gets no gradient:
 * X, scale and bias get theirs here. Inputs 4–7: X − mean of its domain, 1/σ [2, C], D, elements per domain [2, 1].
 */
const domainBatchNormTrain: GradRule = (c) => {
  const [, x, scale, , centred, invstd, d, m] = c.node.inputs;
  const spatial = channelAxes(c.rank(x)).slice(1);
  const toRows = (k: string) => {
    const rows = c.op('Gemm', [d, k], { transA: 1 });
    return spatial.length ? c.op('Unsqueeze', [rows, c.b.ints(spatial)]) : rows;
  };
  const { dx, dscale, db } = fusedBatchNormBackward(c, { scale, invstd, centred, m, needsX: c.needs(1) },
    (v) => c.op('MatMul', [d, c.reduceSum(v, spatial, false)]), toRows);
  return [undefined, dx, c.needs(2) ? c.reduceSum(dscale, [0], false) : undefined, c.needs(3) ? c.reduceSum(db, [0], false) : undefined];
};

/**
 * dX = dY·k1 + (X−mean)·k2 + k3 per group of rows that share statistics (all rows, or one domain's), with dscale and
 * db per group. `reduce` sums a full-size tensor into per-group channel values, `broadcast` sends them back to rows.
 */
function fusedBatchNormBackward(c: GradContext, v: { scale: string; invstd: string; centred: string; m: string; needsX: boolean },
  reduce: (full: string) => string, broadcast: (perGroup: string) => string): { dx?: string; dscale: string; db: string } {
  const { scale, invstd, centred, m } = v;
  const go = c.GO();
  const db = reduce(go);
  const dscale = mul(c, reduce(mul(c, go, centred)), invstd);
  if (!v.needsX) return { dscale, db };
  const k1 = mul(c, scale, invstd);
  const k2 = c.op('Neg', [c.op('Div', [mul(c, mul(c, k1, dscale), invstd), m])]);
  const k3 = c.op('Neg', [c.op('Div', [mul(c, k1, db), m])]);
  return { dx: c.op('Add', [mul(c, go, broadcast(k1)), c.op('Add', [mul(c, centred, broadcast(k2)), broadcast(k3)])]), dscale, db };
}

/** Inference-mode BatchNormalization: a per-channel affine map with constant statistics. */
const batchNormInference: GradRule = (c) => {
  if (c.int('training_mode', 0) === 1) throw new Error('internal: training-mode BatchNormalization must be lowered before differentiation');
  const [x, scale, , mean, variance] = c.node.inputs;
  const rank = c.rank(x);
  const axes = channelAxes(rank);
  const go = c.GO();
  const invstd = c.op('Reciprocal', [c.op('Sqrt', [c.op('Add', [variance, c.b.scalar(c.float('epsilon', 1e-5))])])]);
  const view = (v: string) => channelView(c, v, rank);
  const db = c.needs(2) || c.needs(1) || c.needs(3) || c.needs(4) ? c.reduceSum(go, axes, false) : undefined;
  const sxy = c.needs(1) || c.needs(4) ? c.reduceSum(mul(c, go, x), axes, false) : undefined;
  const centred = sxy && db ? c.op('Sub', [sxy, mul(c, mean, db)]) : undefined;
  return [
    c.needs(0) ? mul(c, go, view(mul(c, scale, invstd))) : undefined,
    c.needs(1) ? mul(c, centred!, invstd) : undefined,
    c.needs(2) ? db : undefined,
    c.needs(3) ? c.op('Neg', [mul(c, mul(c, db!, scale), invstd)]) : undefined,
    c.needs(4) ? mul(c, mul(c, centred!, scale), mul(c, c.b.scalar(-0.5), c.op('Pow', [invstd, c.b.scalar(3)]))) : undefined,
  ];
};

function reduceAxesOf(c: GradContext): number[] {
  const rank = c.rank(c.I(0));
  const axes = c.ints('axes') ?? (c.node.inputs[1] ? c.constInts(1) : []);
  if (axes === undefined) throw new UserError(`node ${c.node.name} (${c.node.op}): reduction axes must be constant for differentiation`);
  if (axes.length === 0) return c.int('noop_with_empty_axes', 0) ? [] : Array.from({ length: rank }, (_, k) => k);
  return axes.map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
}

/** Brings a reduced gradient back to keepdims form and broadcasts it over the input. */
function expandReduced(c: GradContext, grad: string, axes: number[]): string {
  const kept = c.int('keepdims', 1) === 1 || axes.length === 0 ? grad : c.op('Unsqueeze', [grad, c.b.ints(axes)]);
  return c.op('Expand', [kept, c.shapeOf(c.I(0))]);
}

function sliceGrad(c: GradContext): string {
  const x = c.I(0);
  const shape = c.shape(x);
  const rank = shape.length;
  const starts = c.constInts(1);
  const ends = c.constInts(2);
  const axes = c.node.inputs[3] ? c.constInts(3) : Array.from({ length: rank }, (_, k) => k).slice(0, starts?.length ?? c.shape(c.I(1))[0] as number);
  const steps = c.node.inputs[4] ? c.constInts(4) : undefined;
  if (!axes) throw new UserError(`node ${c.node.name} (Slice): axes must be constant for differentiation`);
  if (steps && steps.some((s) => s !== 1)) throw new UserError(`node ${c.node.name} (Slice): slices with steps other than 1 have no gradient rule; use steps of 1`);
  const normAxes = axes.map((a) => (a < 0 ? a + rank : a));
  const staticPads = starts && ends && normAxes.every((a) => typeof shape[a] === 'number');
  if (staticPads) {
    const pads = new Array(2 * rank).fill(0);
    normAxes.forEach((a, i) => {
      const dim = shape[a] as number;
      const norm = (v: number) => Math.min(Math.max(v < 0 ? v + dim : v, 0), dim);
      const [s, e] = [norm(starts![i]), Math.max(norm(ends![i]), norm(starts![i]))];
      pads[a] = s;
      pads[a + rank] = dim - e;
    });
    return c.op('Pad', [c.GO(), c.b.ints(pads)]);
  }
  // Run-time bounds (e.g. the source/target split of the combined batch): pads computed in-graph.
  const dims = c.op('Shape', [x]);
  const zero = c.b.ints([0]);
  const begin: string[] = Array(rank).fill(zero);
  const end: string[] = Array(rank).fill(zero);
  const pick = (t: string, i: number) => c.op('Slice', [t, c.b.ints([i]), c.b.ints([i + 1])]);
  normAxes.forEach((a, i) => {
    const dim = pick(dims, a);
    const norm = (v: string) => {
      const wrapped = c.op('Where', [c.op('Less', [v, zero]), c.op('Add', [v, dim]), v]);
      return c.op('Min', [c.op('Max', [wrapped, zero]), dim]);
    };
    const s = norm(pick(c.I(1), i));
    const e = c.op('Max', [norm(pick(c.I(2), i)), s]);
    begin[a] = s;
    end[a] = c.op('Sub', [dim, e]);
  });
  return c.op('Pad', [c.GO(), c.op('Concat', [...begin, ...end], { axis: 0 })]);
}

function concatGrad(c: GradContext): (string | undefined)[] {
  const rank = c.rank(c.I(0));
  const axis = ((c.int('axis', 0) % rank) + rank) % rank;
  const sizes = c.node.inputs.map((i) => c.shape(i)[axis]);
  if (sizes.every((s) => typeof s === 'number')) {
    const parts = c.b.opN('Split', [c.GO(), c.b.ints(sizes as number[])], { axis }, sizes.length);
    return parts.map((p, i) => (c.needs(i) ? p : undefined));
  }
  let offset = c.b.ints([0]);
  return c.node.inputs.map((input) => {
    const size = c.op('Slice', [c.op('Shape', [input]), c.b.ints([axis]), c.b.ints([axis + 1])]);
    const next = c.op('Add', [offset, size]);
    const part = c.needs(c.node.inputs.indexOf(input)) ? c.op('Slice', [c.GO(), offset, next, c.b.ints([axis])]) : undefined;
    offset = next;
    return part;
  });
}

function matmulGrad(c: GradContext): (string | undefined)[] {
  const [a, b] = [c.I(0), c.I(1)];
  const [ra, rb] = [c.rank(a), c.rank(b)];
  if (ra < 2 || rb < 2) throw new UserError(`node ${c.node.name} (MatMul): 1-D operands have no gradient rule; reshape them to 2-D`);
  const t = (x: string, r: number) => c.op('Transpose', [x], { perm: [...Array.from({ length: r - 2 }, (_, k) => k), r - 1, r - 2] });
  const go = c.GO();
  const out = c.outShape();
  return [
    c.needs(0) ? c.unbroadcast(c.op('MatMul', [go, t(b, rb)]), [...out.slice(0, -1), c.shape(a)[ra - 1]], a) : undefined,
    c.needs(1) ? c.unbroadcast(c.op('MatMul', [t(a, ra), go]), [...out.slice(0, -2), c.shape(b)[rb - 2], out[out.length - 1]], b) : undefined,
  ];
}

function gemmGrad(c: GradContext): (string | undefined)[] {
  const [a, b] = [c.I(0), c.I(1)];
  const [ta, tb] = [c.int('transA', 0), c.int('transB', 0)];
  const alpha = c.float('alpha', 1);
  const beta = c.float('beta', 1);
  const go = c.GO();
  const gemm = (x: string, y: string, transA: number, transB: number) => c.op('Gemm', [x, y], { transA, transB, alpha });
  return [
    c.needs(0) ? (ta ? gemm(b, go, tb, 1) : gemm(go, b, 0, tb ? 0 : 1)) : undefined,
    c.needs(1) ? (tb ? gemm(go, a, 1, ta) : gemm(a, go, ta ? 0 : 1, 0)) : undefined,
    c.needs(2) ? c.unbroadcast(beta === 1 ? go : mul(c, go, c.b.scalar(beta)), c.outShape(), c.I(2)) : undefined,
  ];
}

function poolAxesAttrs(c: GradContext) {
  const k = c.ints('kernel_shape')!;
  const s = c.ints('strides') ?? k.map(() => 1);
  const p = c.ints('pads') ?? [...k, ...k].map(() => 0);
  return { k, s, p };
}

/** AveragePool backward: a depthwise ConvTranspose of dY divided by each window's element count. */
function averagePoolGrad(c: GradContext): string {
  const { k, s, p } = poolAxesAttrs(c);
  if (k.length !== 2) throw new UserError(`node ${c.node.name} (AveragePool): only 2-D pooling has a gradient rule`);
  if ((c.ints('dilations') ?? [1, 1]).some((d) => d !== 1)) throw new UserError(`node ${c.node.name} (AveragePool): dilated pooling has no gradient rule`);
  const [, C, H, W] = c.shape(c.I(0));
  const [, , OH, OW] = c.shape(c.O(0));
  if ([C, H, W, OH, OW].some((d) => typeof d !== 'number')) throw new UserError(`node ${c.node.name} (AveragePool): channel and spatial sizes must be fixed`);
  const includePad = c.int('count_include_pad', 0) === 1;
  const counts = new Float32Array((OH as number) * (OW as number));
  for (let oh = 0; oh < (OH as number); oh++) {
    for (let ow = 0; ow < (OW as number); ow++) {
      const rows = [oh * s[0] - p[0], oh * s[0] - p[0] + k[0]];
      const cols = [ow * s[1] - p[1], ow * s[1] - p[1] + k[1]];
      const clip = (r: number[], lo: number, hi: number) => Math.min(r[1], hi) - Math.max(r[0], lo);
      const inRows = includePad ? clip(rows, -p[0], (H as number) + p[2]) : clip(rows, 0, H as number);
      const inCols = includePad ? clip(cols, -p[1], (W as number) + p[3]) : clip(cols, 0, W as number);
      counts[oh * (OW as number) + ow] = 1 / (inRows * inCols);
    }
  }
  const scaled = mul(c, c.GO(), c.b.constant('float', counts, [1, 1, OH as number, OW as number]));
  const ones = c.b.constant('float', new Float32Array((C as number) * k[0] * k[1]).fill(1), [C as number, 1, k[0], k[1]]);
  // ceil_mode: the last windows may reach past the end pad; widening the end pad crops their overhang.
  const overhang = [0, 1].map((i) => Math.max(0, (((i ? OW : OH) as number) - 1) * s[i] + k[i] - ((i ? W : H) as number) - p[i] - p[i + 2]));
  const pads = [p[0], p[1], p[2] + overhang[0], p[3] + overhang[1]];
  const outPad = [0, 1].map((i) => ((i ? W : H) as number) - (((i ? OW : OH) as number) - 1) * s[i] - k[i] + pads[i] + pads[i + 2]);
  return c.op('ConvTranspose', [scaled, ones], { group: C as number, kernel_shape: k, strides: s, pads, output_padding: outPad });
}

/** MaxPool backward: scatter-add dY at the argmax indices (flattened over the whole NCHW tensor). */
function maxPoolGrad(c: GradContext): string {
  const indices = c.O(1);
  if (!indices) throw new Error('internal: MaxPool must expose Indices before differentiation');
  if (c.int('storage_order', 0) !== 0) throw new UserError(`node ${c.node.name} (MaxPool): storage_order=1 has no gradient rule`);
  const x = c.I(0);
  const zeros = c.op('ConstantOfShape', [c.op('Reshape', [c.op('Size', [x]), c.b.ints([1])])], { value: { t: { dtype: 'float', dims: [1], data: new Float32Array([0]) } } });
  const flat = (v: string) => c.op('Reshape', [v, c.b.ints([-1])]);
  const scattered = c.op('ScatterElements', [zeros, flat(indices), flat(c.GO())], { axis: 0, reduction: 'add' });
  return c.reshapeLike(scattered, x);
}

function reduceSpatialCount(c: GradContext, axes: number[]): string {
  const s = c.shape(c.I(0));
  const dims = axes.map((a) => s[a]);
  if (dims.every((d) => typeof d === 'number')) return c.b.scalar((dims as number[]).reduce((p, q) => p * q, 1));
  return c.op('Div', [c.op('Cast', [c.op('Size', [c.I(0)])], { to: DataType.float }), c.op('Cast', [c.op('Size', [c.O(0)])], { to: DataType.float })]);
}

function dropoutScale(c: GradContext): number {
  const ratio = c.node.inputs[1] ? c.constTensor(1) : undefined;
  const r = ratio ? Number((ratio.data as Float32Array)[0]) : 0.5;
  return 1 / (1 - r);
}

function isTrainingDropout(c: GradContext): boolean {
  if (!c.node.inputs[2]) return false;
  const t = c.constTensor(2);
  if (!t) throw new UserError(`node ${c.node.name} (Dropout): training_mode must be a constant to differentiate; pass an explicit keep-mask and use Mul instead`);
  return Number(t.data[0]) !== 0;
}

/**
 * Softmax cross-entropy over [N, C] scores with integer labels: (softmax − onehot) · dLoss; rows whose
 * label is ignore_index get no gradient and, for mean reduction, do not count (PyTorch's semantics).
 */
function softmaxCrossEntropyGrad(c: GradContext): (string | undefined)[] {
  const reduction = c.node.attrs.reduction && 's' in c.node.attrs.reduction ? c.node.attrs.reduction.s : 'mean';
  if (c.node.inputs[2]) throw new UserError(`node ${c.node.name} (SoftmaxCrossEntropyLoss): class weights have no gradient rule; drop them`);
  if (c.hasGO(1)) throw new UserError(`node ${c.node.name} (SoftmaxCrossEntropyLoss): its log_prob output is used on the path to the loss, which has no gradient rule`);
  const scores = c.I(0);
  const labels = c.I(1);
  const shape = c.shape(scores);
  if (shape.length !== 2 || typeof shape[1] !== 'number') throw new UserError(`node ${c.node.name} (SoftmaxCrossEntropyLoss): scores must be [N, C] with a fixed C; got [${shape}]`);
  const ignore = c.node.attrs.ignore_index && 'i' in c.node.attrs.ignore_index ? c.node.attrs.ignore_index.i : undefined;
  // OneHot of an out-of-range label (ignore_index) is all zeros, and the row mask removes its softmax term.
  const onehot = c.op('OneHot', [labels, c.b.constant('int64', [shape[1]], []), c.b.constant('float', [0, 1], [2])], { axis: -1 });
  let diff = c.op('Sub', [c.op('Softmax', [scores], { axis: 1 }), onehot]);
  const keep = ignore === undefined ? undefined
    : c.op('Cast', [c.op('Not', [c.op('Equal', [labels, c.b.constant('int64', [ignore], [])])])], { to: DataType.float });
  if (keep) diff = mul(c, diff, c.op('Unsqueeze', [keep, c.b.ints([1])]));
  if (reduction === 'none') return [mul(c, diff, c.op('Unsqueeze', [c.GO(), c.b.ints([1])]))];
  const scaled = mul(c, diff, c.GO());
  if (reduction === 'sum') return [scaled];
  const count = keep ? c.op('ReduceSum', [keep], { keepdims: 0 })
    : typeof shape[0] === 'number' ? c.b.scalar(shape[0])
    : c.op('Cast', [c.op('Slice', [c.op('Shape', [scores]), c.b.ints([0]), c.b.ints([1])])], { to: DataType.float });
  return [c.op('Div', [scaled, count])];
}

/**
 * LayerNormalization over axes [axis, rank): with x̂ = (x − mean)·invstd and g = dY·scale,
 * dX = invstd·(g − mean(g) − x̂·mean(g·x̂)); dScale and dB sum over the leading axes. The node's
 * Mean and InvStdDev outputs (exposed in lower.ts) are ordinary outputs, not in-place buffers.
 */
function layerNormGrad(c: GradContext): (string | undefined)[] {
  const [x, scale, bias] = c.node.inputs;
  const [, mean, invstd] = c.node.outputs;
  if (!mean || !invstd) throw new Error('internal: LayerNormalization must expose Mean and InvStdDev before differentiation');
  const rank = c.rank(x);
  const axis = c.int('axis', -1) < 0 ? c.int('axis', -1) + rank : c.int('axis', -1);
  const normAxes = Array.from({ length: rank - axis }, (_, k) => axis + k);
  const leadAxes = Array.from({ length: axis }, (_, k) => k);
  const go = c.GO();
  const xhat = mul(c, c.op('Sub', [x, mean]), invstd);
  const paramGrad = (v: string, input: string) => c.reshapeLike(c.reduceSum(v, leadAxes, false), input);
  let dx: string | undefined;
  if (c.needs(0)) {
    const g = mul(c, go, scale);
    const centred = c.op('Sub', [g, c.reduceMean(g, normAxes, true)]);
    dx = mul(c, invstd, c.op('Sub', [centred, mul(c, xhat, c.reduceMean(mul(c, g, xhat), normAxes, true))]));
  }
  return [dx, c.needs(1) ? paramGrad(mul(c, go, xhat), scale) : undefined, c.needs(2) ? paramGrad(go, bias) : undefined];
}

/** Split: the output gradients concatenated back; an output without one contributes zeros. */
function splitGrad(c: GradContext): string {
  const rank = c.rank(c.I(0));
  const axis = ((c.int('axis', 0) % rank) + rank) % rank;
  const parts = c.node.outputs.map((o, i) => (c.hasGO(i) ? c.GO(i)
    : c.op('ConstantOfShape', [c.shapeOf(o)], { value: { t: { dtype: 'float', dims: [1], data: new Float32Array([0]) } } })));
  return parts.length === 1 ? parts[0] : c.op('Concat', parts, { axis });
}

/**
 * Gather along one axis: dY scattered (added, for repeated indices) into zeros shaped like the data.
 * A constant scalar index (a class token, x[:, 0]) needs no scatter: dY padded into place.
 */
function gatherGrad(c: GradContext): string {
  const [data, indices] = c.node.inputs;
  const shape = c.shape(data);
  const rank = shape.length;
  const axis = ((c.int('axis', 0) % rank) + rank) % rank;
  const index = c.constInts(1);
  const dim = shape[axis];
  if (index && index.length === 1 && c.rank(indices) === 0 && typeof dim === 'number') {
    const at = index[0] < 0 ? index[0] + dim : index[0];
    const pads = new Array(2 * rank).fill(0);
    pads[axis] = at;
    pads[axis + rank] = dim - at - 1;
    return c.op('Pad', [c.op('Unsqueeze', [c.GO(), c.b.ints([axis])]), c.b.ints(pads)]);
  }
  // ScatterND writes along the leading axis: move `axis` to the front of the data and of dY.
  const qRank = c.rank(indices);
  const toFront = [axis, ...Array.from({ length: rank }, (_, k) => k).filter((k) => k !== axis)];
  const goFront = [...Array.from({ length: qRank }, (_, k) => axis + k), ...Array.from({ length: axis }, (_, k) => k), ...Array.from({ length: rank - axis - 1 }, (_, k) => axis + qRank + k)];
  const frontShape = c.op('Gather', [c.op('Shape', [data]), c.b.ints(toFront)], { axis: 0 });
  const zeros = c.op('ConstantOfShape', [frontShape], { value: { t: { dtype: 'float', dims: [1], data: new Float32Array([0]) } } });
  const size = c.op('Gather', [c.op('Shape', [data]), c.b.constant('int64', [axis], [])], { axis: 0 });
  const wrapped = c.op('Where', [c.op('Less', [indices, c.b.constant('int64', [0], [])]), c.op('Add', [indices, size]), indices]);
  const updates = axis === 0 ? c.GO() : c.op('Transpose', [c.GO()], { perm: goFront });
  const scattered = c.op('ScatterND', [zeros, c.op('Unsqueeze', [wrapped, c.b.ints([-1])]), updates], { reduction: 'add' });
  return axis === 0 ? scattered : c.op('Transpose', [scattered], { perm: toFront.map((_, k) => toFront.indexOf(k)) });
}

/** Clip's pass-through mask, from its input: inside [min, max] inclusive (torch.clamp's backward). */
function clipGrad(c: GradContext): string {
  if (c.needs(1) || c.needs(2)) throw new UserError(`node ${c.node.name} (Clip): its min and max must be constants to differentiate`);
  const x = c.I(0);
  const conds: string[] = [];
  if (c.node.inputs[1]) conds.push(c.op('GreaterOrEqual', [x, c.I(1)]));
  if (c.node.inputs[2]) conds.push(c.op('LessOrEqual', [x, c.I(2)]));
  if (conds.length === 0) return c.GO();
  return c.op('Where', [conds.length === 2 ? c.op('And', conds) : conds[0], c.GO(), c.b.scalar(0)]);
}

export const gradientRules: Record<string, GradRule> = {
  Identity: passThrough,
  Dropout: (c) => [isTrainingDropout(c) ? mul(c, mul(c, c.GO(), c.op('Cast', [c.O(1)], { to: DataType.float })), c.b.scalar(dropoutScale(c))) : c.GO()],
  Relu: (c) => [c.op('Where', [c.op('Greater', [c.O(0), c.b.scalar(0)]), c.GO(), c.b.scalar(0)])],
  LeakyRelu: (c) => [c.op('Where', [c.op('Greater', [c.I(0), c.b.scalar(0)]), c.GO(), mul(c, c.GO(), c.b.scalar(c.float('alpha', 0.01)))])],
  Sigmoid: (c) => [mul(c, c.GO(), mul(c, c.O(0), c.op('Sub', [c.b.scalar(1), c.O(0)])))],
  Tanh: (c) => [mul(c, c.GO(), c.op('Sub', [c.b.scalar(1), mul(c, c.O(0), c.O(0))]))],
  Softplus: (c) => [mul(c, c.GO(), c.op('Sigmoid', [c.I(0)]))],
  Exp: (c) => [mul(c, c.GO(), c.O(0))],
  Erf: (c) => [mul(c, c.GO(), mul(c, c.op('Exp', [c.op('Neg', [mul(c, c.I(0), c.I(0))])]), c.b.scalar(2 / Math.sqrt(Math.PI))))],
  // PyTorch's backward: 0 below −3, x/3 + ½ up to 3 inclusive, 1 above.
  HardSwish: (c) => [c.op('Where', [c.op('Less', [c.I(0), c.b.scalar(-3)]), c.b.scalar(0),
    c.op('Where', [c.op('LessOrEqual', [c.I(0), c.b.scalar(3)]), mul(c, c.GO(), c.op('Add', [mul(c, c.I(0), c.b.scalar(1 / 3)), c.b.scalar(0.5)])), c.GO()])])],
  // y = clamp(alpha·x + beta, 0, 1): slope alpha strictly inside the ramp, read from the output.
  HardSigmoid: (c) => [c.op('Where', [c.op('And', [c.op('Greater', [c.O(0), c.b.scalar(0)]), c.op('Less', [c.O(0), c.b.scalar(1)])]),
    mul(c, c.GO(), c.b.scalar(c.float('alpha', 0.2))), c.b.scalar(0)])],
  Clip: (c) => [clipGrad(c)],
  Log: (c) => [c.op('Div', [c.GO(), c.I(0)])],
  Sqrt: (c) => [c.op('Div', [c.GO(), mul(c, c.O(0), c.b.scalar(2))])],
  Reciprocal: (c) => [c.op('Neg', [mul(c, c.GO(), mul(c, c.O(0), c.O(0)))])],
  Neg: (c) => [c.op('Neg', [c.GO()])],
  Abs: (c) => [mul(c, c.GO(), c.op('Sign', [c.I(0)]))],
  Cast: (c) => [c.op('Cast', [c.GO()], { to: DataType[c.g.info(c.I(0))!.dtype] })],
  Add: (c) => binary(c, [() => c.GO(), () => c.GO()]),
  Sub: (c) => binary(c, [() => c.GO(), () => c.op('Neg', [c.GO()])]),
  Mul: (c) => binary(c, [() => mul(c, c.GO(), c.I(1)), () => mul(c, c.GO(), c.I(0))]),
  Div: (c) => binary(c, [() => c.op('Div', [c.GO(), c.I(1)]), () => c.op('Neg', [c.op('Div', [mul(c, c.GO(), c.O(0)), c.I(1)])])]),
  Pow: (c) => binary(c, [
    () => {
      const e = c.constTensor(1);
      const exponent = e && e.data.length === 1 ? Number(e.data[0]) : undefined;
      if (exponent === 2) return mul(c, c.GO(), mul(c, c.I(0), c.b.scalar(2)));
      return mul(c, c.GO(), mul(c, c.I(1), c.op('Pow', [c.I(0), c.op('Sub', [c.I(1), c.b.scalar(1)])])));
    },
    () => mul(c, c.GO(), mul(c, c.O(0), c.op('Log', [c.I(0)]))),
  ]),
  Sum: (c) => c.node.inputs.map((input, i) => (c.needs(i) ? c.unbroadcast(c.GO(), c.outShape(), input) : undefined)),
  Where: (c) => {
    const zero = c.b.scalar(0);
    const out = c.outShape();
    return [
      undefined,
      c.needs(1) ? c.unbroadcast(c.op('Where', [c.I(0), c.GO(), zero]), out, c.I(1)) : undefined,
      c.needs(2) ? c.unbroadcast(c.op('Where', [c.I(0), zero, c.GO()]), out, c.I(2)) : undefined,
    ];
  },
  Expand: (c) => [c.unbroadcast(c.GO(), c.outShape(), c.I(0))],
  MatMul: matmulGrad,
  Gemm: gemmGrad,
  Flatten: reshapeBack,
  Reshape: reshapeBack,
  Squeeze: reshapeBack,
  Unsqueeze: reshapeBack,
  Transpose: (c) => {
    const perm = c.ints('perm') ?? c.shape(c.I(0)).map((_, k, a) => a.length - 1 - k);
    const inverse = perm.map((_, k) => perm.indexOf(k));
    return [c.op('Transpose', [c.GO()], { perm: inverse })];
  },
  Concat: concatGrad,
  Split: (c) => [splitGrad(c)],
  Gather: (c) => [gatherGrad(c)],
  LayerNormalization: layerNormGrad,
  Slice: (c) => [sliceGrad(c)],
  Pad: (c) => {
    const mode = c.node.attrs.mode && 's' in c.node.attrs.mode ? c.node.attrs.mode.s : 'constant';
    if (mode !== 'constant') throw new UserError(`node ${c.node.name} (Pad): mode ${mode} has no gradient rule; use constant padding`);
    if (c.node.inputs[3]) throw new UserError(`node ${c.node.name} (Pad): the axes input has no gradient rule; pad all axes`);
    const pads = c.ints('pads') ?? c.constInts(1);
    const negated = pads ? c.b.ints(pads.map((p) => -p)) : c.op('Neg', [c.I(1)]);
    return [c.op('Pad', [c.GO(), negated])];
  },
  ReduceSum: (c) => [expandReduced(c, c.GO(), reduceAxesOf(c))],
  ReduceMean: (c) => {
    const axes = reduceAxesOf(c);
    return [expandReduced(c, c.op('Div', [c.GO(), reduceSpatialCount(c, axes)]), axes)];
  },
  GlobalAveragePool: (c) => {
    const axes = c.shape(c.I(0)).map((_, k) => k).slice(2);
    return [c.op('Expand', [c.op('Div', [c.GO(), reduceSpatialCount(c, axes)]), c.shapeOf(c.I(0))])];
  },
  AveragePool: (c) => [averagePoolGrad(c)],
  MaxPool: (c) => [maxPoolGrad(c)],
  Softmax: (c) => {
    const axis = c.int('axis', -1);
    const dot = c.reduceSum(mul(c, c.GO(), c.O(0)), [axis], true);
    return [mul(c, c.O(0), c.op('Sub', [c.GO(), dot]))];
  },
  LogSoftmax: (c) => {
    const axis = c.int('axis', -1);
    return [c.op('Sub', [c.GO(), mul(c, c.op('Exp', [c.O(0)]), c.reduceSum(c.GO(), [axis], true))])];
  },
  SoftmaxCrossEntropyLoss: softmaxCrossEntropyGrad,
  Conv: (c) => {
    const geo = convGeometry(c);
    const groups = c.int('group', 1);
    if (groups > 1) {
      return [
        c.needs(0) ? groupedConvInputGrad(c, geo, groups) : undefined,
        c.needs(1) ? groupedConvWeightGrad(c, geo, groups) : undefined,
        c.needs(2) ? c.reduceSum(c.GO(), [0, 2, 3], false) : undefined,
      ];
    }
    const recipes = chooseConvRecipes(geo);
    return [
      c.needs(0) ? convInputGrad(c, geo, recipes.dx) : undefined,
      c.needs(1) ? convWeightGrad(c, geo, recipes.dw) : undefined,
      c.needs(2) ? c.reduceSum(c.GO(), [0, 2, 3], false) : undefined,
    ];
  },
  BatchNormalization: batchNormInference,
  [`${MARKER_DOMAIN}:BatchNormalizationTrain`]: batchNormTrain,
  [`${MARKER_DOMAIN}:DomainBatchNormalizationTrain`]: domainBatchNormTrain,
  /** DANN's gradient reversal: identity forward, dY × −alpha backward (alpha is input 1). */
  [`${MARKER_DOMAIN}:GradientReversal`]: (c) => [c.op('Neg', [mul(c, c.GO(), c.I(1))]), undefined],
};

/** Ops whose outputs carry no gradient (integer, boolean or shape results). */
export const nonDifferentiable = new Set([
  'Shape', 'Size', 'Greater', 'Less', 'Equal', 'GreaterOrEqual', 'LessOrEqual', 'Not', 'And', 'Or',
  'ArgMax', 'ArgMin', 'NonZero', 'Range', 'OneHot', 'ConstantOfShape', 'Constant', 'IsNaN', 'IsInf', 'Sign', 'Floor', 'Ceil', 'Round',
]);

export function ruleKey(op: string, domain: string): string {
  return domain && domain !== 'ai.onnx' ? `${domain}:${op}` : op;
}

