/**
 * Shape and dtype inference for the ops ort-dann builds or imports. Dims are numbers or symbols;
 * 1-D int64 "shape values" (Shape → Gather → Concat glue that torch.onnx.export emits) are evaluated
 * symbolically so a Reshape fed by them still gets a known output shape.
 */
import { UserError } from '../errors.ts';
import { type Dim, type Graph, type Node, type ValueInfo, attrInt, attrInts } from './graph.ts';
import { type DType, DataType, dtypeFromCode, intValues } from './proto.ts';
import { unsupportedOp } from './unsupported.ts';

export interface ShapeContext {
  g: Graph;
  node: Node;
  in(i: number): ValueInfo;
  has(i: number): boolean;
  /** Constant or symbolically known integer values of input i (shape tensors, axes). */
  values(i: number): Dim[] | undefined;
}

interface Inferred {
  outputs: { dtype: DType; shape?: Dim[] }[];
  /** Symbolic values of output 0 when it is a small int64 vector. */
  values?: Dim[];
}

type ShapeRule = (c: ShapeContext) => Inferred;

const same: ShapeRule = (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.in(0).shape }] });

export function broadcastShapes(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => !s)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let k = 0; k < rank; k++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const e = s![s!.length - rank + k];
      if (e === undefined || e === 1) continue;
      if (d === 1) d = e;
      else if (typeof d === 'number' && typeof e === 'number' && d !== e) throw new UserError(`shapes ${shapes.map((s) => `[${s}]`).join(' and ')} do not broadcast`);
      else if (typeof d === 'string' && typeof e === 'number') d = e;
    }
    out.push(d);
  }
  return out;
}

const broadcast: ShapeRule = (c) => ({
  outputs: [{ dtype: c.in(0).dtype, shape: broadcastShapes(c.node.inputs.map((_, i) => c.in(i).shape)) }],
});

const compare: ShapeRule = (c) => ({ outputs: [{ dtype: 'bool', shape: broadcast(c).outputs[0].shape }] });

/**
 * Evaluates an elementwise op on small known integer vectors (torch's expand(n, -1, -1) glue:
 * ConstantOfShape, Mul, Equal, Where), so the shape it computes stays known.
 */
function valued(rule: ShapeRule, f: (...v: number[]) => number): ShapeRule {
  return (c) => {
    const result = rule(c);
    const inputs = c.node.inputs.map((_, i) => c.values(i));
    if (inputs.some((v) => !v || v.some((d) => typeof d !== 'number'))) return result;
    const n = Math.max(...inputs.map((v) => v!.length));
    if (inputs.some((v) => v!.length !== n && v!.length !== 1)) return result;
    const at = (v: Dim[], k: number) => (v.length === 1 ? v[0] : v[k]) as number;
    return { ...result, values: Array.from({ length: n }, (_, k) => f(...inputs.map((v) => at(v!, k)))) };
  };
}

const normAxis = (a: number, rank: number) => (a < 0 ? a + rank : a);

function poolLike(c: ShapeContext, kernel: number[], channelsOut?: Dim): Dim[] | undefined {
  const x = c.in(0).shape;
  if (!x) return undefined;
  const n = c.node;
  const spatial = x.length - 2;
  const strides = attrInts(n, 'strides') ?? Array(spatial).fill(1);
  const dil = attrInts(n, 'dilations') ?? Array(spatial).fill(1);
  const pads = attrInts(n, 'pads') ?? Array(spatial * 2).fill(0);
  const autoPad = n.attrs.auto_pad && 's' in n.attrs.auto_pad ? n.attrs.auto_pad.s : 'NOTSET';
  const ceil = attrInt(n, 'ceil_mode', 0) === 1;
  const out: Dim[] = [x[0], channelsOut ?? x[1]];
  for (let k = 0; k < spatial; k++) {
    const h = x[k + 2];
    if (typeof h !== 'number') { out.push(`${n.name}_s${k}`); continue; }
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') { out.push(Math.ceil(h / strides[k])); continue; }
    const eff = dil[k] * (kernel[k] - 1) + 1;
    const span = h + (autoPad === 'VALID' ? 0 : pads[k] + pads[k + spatial]) - eff;
    let o = (ceil ? Math.ceil(span / strides[k]) : Math.floor(span / strides[k])) + 1;
    if (ceil && (o - 1) * strides[k] >= h + pads[k]) o -= 1; // the last window must start inside the input or left pad
    if (o <= 0) throw new UserError(`node ${n.name} (${n.op}): a ${h}-pixel input leaves no output for kernel ${kernel[k]}, stride ${strides[k]}; use larger images`);
    out.push(o);
  }
  return out;
}

function reduceShape(c: ShapeContext, axes: number[] | undefined): Dim[] | undefined {
  const x = c.in(0).shape;
  const keep = attrInt(c.node, 'keepdims', 1) === 1;
  const all = !axes || axes.length === 0;
  if (!x) return all && !keep && attrInt(c.node, 'noop_with_empty_axes', 0) === 0 ? [] : undefined;
  if (!axes || axes.length === 0) {
    if (attrInt(c.node, 'noop_with_empty_axes', 0) === 1) return x;
    return keep ? x.map(() => 1) : [];
  }
  const set = new Set(axes.map((a) => normAxis(a, x.length)));
  return keep ? x.map((d, k) => (set.has(k) ? 1 : d)) : x.filter((_, k) => !set.has(k));
}

function reduceAxes(c: ShapeContext): number[] | undefined {
  const fromAttr = attrInts(c.node, 'axes');
  if (fromAttr) return fromAttr;
  if (c.has(1)) {
    const v = c.values(1);
    if (!v || v.some((d) => typeof d !== 'number')) return undefined;
    return v as number[];
  }
  return [];
}

const reduce: ShapeRule = (c) => {
  const axes = reduceAxes(c);
  return { outputs: [{ dtype: c.in(0).dtype, shape: axes === undefined ? undefined : reduceShape(c, axes) }] };
};

function product(dims: Dim[]): { num: number; syms: string[] } {
  let num = 1;
  const syms: string[] = [];
  for (const d of dims) typeof d === 'number' ? (num *= d) : syms.push(d);
  return { num, syms };
}

/** Resolves a Reshape target (0 = copy, -1 = infer) against the input shape, cancelling symbols. */
export function resolveReshape(input: Dim[] | undefined, target: Dim[], allowZero: boolean, name: string): Dim[] {
  const out = target.map((d, k) => (d === 0 && !allowZero && input ? input[k] : d));
  const minus = out.indexOf(-1);
  if (minus < 0 || !input) return minus < 0 ? out : out.map((d) => (d === -1 ? `${name}_r` : d));
  const inP = product(input);
  const rest = product(out.filter((_, k) => k !== minus));
  const leftover = [...inP.syms];
  for (const s of rest.syms) {
    const at = leftover.indexOf(s);
    if (at < 0) { out[minus] = `${name}_r`; return out; }
    leftover.splice(at, 1);
  }
  if (leftover.length === 0) {
    if (inP.num % rest.num !== 0) throw new UserError(`node ${name}: cannot reshape [${input}] to [${target}]`);
    out[minus] = inP.num / rest.num;
  } else out[minus] = leftover.length === 1 && inP.num === rest.num ? leftover[0] : `${name}_r`;
  return out;
}

const rules: Record<string, ShapeRule> = {
  Identity: same, Relu: same, Sigmoid: same, Softplus: same, Exp: same, Log: same, Sqrt: same, Neg: same,
  Abs: same, Tanh: same, Erf: same, Reciprocal: same, LeakyRelu: same, Softmax: same, LogSoftmax: same, Sign: same,
  GradientReversal: same, Floor: same, Ceil: same, Clip: same, HardSwish: same, HardSigmoid: same,
  Not: (c) => ({ outputs: [{ dtype: 'bool', shape: c.in(0).shape }] }),
  IsNaN: (c) => ({ outputs: [{ dtype: 'bool', shape: c.in(0).shape }] }),
  IsInf: (c) => ({ outputs: [{ dtype: 'bool', shape: c.in(0).shape }] }),
  Add: valued(broadcast, (a, b) => a + b), Sub: valued(broadcast, (a, b) => a - b), Mul: valued(broadcast, (a, b) => a * b), Div: broadcast, Pow: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: broadcastShapes([c.in(0).shape, c.in(1).shape]) }] }),
  Max: broadcast, Min: broadcast, Sum: broadcast, Mean: broadcast,
  Greater: compare, Less: compare, Equal: valued(compare, (a, b) => Number(a === b)), GreaterOrEqual: compare, LessOrEqual: compare, And: compare, Or: compare,
  Where: valued((c) => ({ outputs: [{ dtype: c.in(1).dtype, shape: broadcastShapes([c.in(0).shape, c.in(1).shape, c.in(2).shape]) }] }), (cond, a, b) => (cond ? a : b)),
  Cast: (c) => ({ outputs: [{ dtype: dtypeFromCode(attrInt(c.node, 'to', 1)), shape: c.in(0).shape }], values: c.values(0) }),
  Dropout: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.in(0).shape }, { dtype: 'bool', shape: c.in(0).shape }] }),
  Conv: (c) => {
    const w = c.in(1).shape;
    const kernel = attrInts(c.node, 'kernel_shape') ?? (w?.slice(2) as number[]);
    return { outputs: [{ dtype: c.in(0).dtype, shape: poolLike(c, kernel, w?.[0]) }] };
  },
  ConvTranspose: (c) => {
    const x = c.in(0).shape;
    const w = c.in(1).shape;
    const n = c.node;
    const explicit = attrInts(n, 'output_shape');
    if (!x || !w) return { outputs: [{ dtype: c.in(0).dtype }] };
    const group = attrInt(n, 'group', 1);
    const spatial = x.length - 2;
    const k = attrInts(n, 'kernel_shape') ?? (w.slice(2) as number[]);
    const s = attrInts(n, 'strides') ?? Array(spatial).fill(1);
    const d = attrInts(n, 'dilations') ?? Array(spatial).fill(1);
    const p = attrInts(n, 'pads') ?? Array(2 * spatial).fill(0);
    const op = attrInts(n, 'output_padding') ?? Array(spatial).fill(0);
    const sp = explicit ?? x.slice(2).map((h, i) => (typeof h === 'number' ? s[i] * (h - 1) + op[i] + d[i] * (k[i] - 1) + 1 - p[i] - p[i + spatial] : `${n.name}_s${i}`));
    const cout = typeof w[1] === 'number' ? w[1] * group : w[1];
    return { outputs: [{ dtype: c.in(0).dtype, shape: [x[0], cout, ...sp] }] };
  },
  BatchNormalizationTrain: same,
  DomainBatchNormalizationTrain: same,
  DomainBatchNormalization: (c) => {
    const x = c.in(0);
    const stat = { dtype: x.dtype, shape: c.in(3).shape };
    return { outputs: [{ dtype: x.dtype, shape: x.shape }, stat, stat, stat, stat] };
  },
  BatchNormalization: (c) => {
    const training = attrInt(c.node, 'training_mode', 0) === 1;
    const x = c.in(0);
    const stat = { dtype: x.dtype, shape: c.in(3).shape };
    return { outputs: training ? [{ dtype: x.dtype, shape: x.shape }, stat, stat] : [{ dtype: x.dtype, shape: x.shape }] };
  },
  LayerNormalization: (c) => {
    const x = c.in(0);
    const axis = attrInt(c.node, 'axis', -1);
    const stat = { dtype: dtypeFromCode(attrInt(c.node, 'stash_type', 1)), shape: x.shape?.map((d, k) => (k < normAxis(axis, x.shape!.length) ? d : 1)) };
    return { outputs: [{ dtype: x.dtype, shape: x.shape }, stat, stat] };
  },
  Split: (c) => {
    const x = c.in(0);
    const count = c.node.outputs.length;
    if (!x.shape) return { outputs: c.node.outputs.map(() => ({ dtype: x.dtype })) };
    const axis = normAxis(attrInt(c.node, 'axis', 0), x.shape.length);
    const dim = x.shape[axis];
    // Without sizes: equal parts, the last one smaller when the axis does not divide (opset 18's num_outputs).
    const sizes: Dim[] = attrInts(c.node, 'split') ?? (c.has(1) ? c.values(1) : undefined)
      ?? (typeof dim === 'number' ? Array.from({ length: count }, (_, k) => Math.min(Math.ceil(dim / count), dim - k * Math.ceil(dim / count))) : c.node.outputs.map((_, k) => `${c.node.name}_p${k}`));
    return { outputs: sizes.map((s) => ({ dtype: x.dtype, shape: x.shape!.map((d, k) => (k === axis ? s : d)) })) };
  },
  MaxPool: (c) => {
    const shape = poolLike(c, attrInts(c.node, 'kernel_shape')!);
    return { outputs: [{ dtype: c.in(0).dtype, shape }, { dtype: 'int64', shape }] };
  },
  AveragePool: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: poolLike(c, attrInts(c.node, 'kernel_shape')!) }] }),
  GlobalAveragePool: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.in(0).shape?.map((d, k) => (k < 2 ? d : 1)) }] }),
  GlobalMaxPool: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.in(0).shape?.map((d, k) => (k < 2 ? d : 1)) }] }),
  MatMul: (c) => {
    const a = c.in(0).shape;
    const b = c.in(1).shape;
    if (!a || !b) return { outputs: [{ dtype: c.in(0).dtype }] };
    const a2 = a.length === 1 ? [1, a[0]] : a;
    const b2 = b.length === 1 ? [b[0], 1] : b;
    const batch = broadcastShapes([a2.slice(0, -2), b2.slice(0, -2)])!;
    const out = [...batch, a2[a2.length - 2], b2[b2.length - 1]];
    if (a.length === 1) out.splice(out.length - 2, 1);
    if (b.length === 1) out.pop();
    return { outputs: [{ dtype: c.in(0).dtype, shape: out }] };
  },
  Gemm: (c) => {
    const a = c.in(0).shape;
    const b = c.in(1).shape;
    const m = a ? (attrInt(c.node, 'transA', 0) ? a[1] : a[0]) : `${c.node.name}_m`;
    const n = b ? (attrInt(c.node, 'transB', 0) ? b[0] : b[1]) : `${c.node.name}_n`;
    return { outputs: [{ dtype: c.in(0).dtype, shape: [m, n] }] };
  },
  Flatten: (c) => {
    const x = c.in(0).shape;
    if (!x) return { outputs: [{ dtype: c.in(0).dtype }] };
    const axis = normAxis(attrInt(c.node, 'axis', 1), x.length);
    const dim = (ds: Dim[]) => { const p = product(ds); return p.syms.length === 0 ? p.num : p.num === 1 && p.syms.length === 1 ? p.syms[0] : `${c.node.name}_f`; };
    return { outputs: [{ dtype: c.in(0).dtype, shape: [dim(x.slice(0, axis)), dim(x.slice(axis))] }] };
  },
  Reshape: (c) => {
    const target = c.values(1);
    return { outputs: [{ dtype: c.in(0).dtype, shape: target ? resolveReshape(c.in(0).shape, target, attrInt(c.node, 'allowzero', 0) === 1, c.node.name) : undefined }], values: c.values(0) };
  },
  Transpose: (c) => {
    const x = c.in(0).shape;
    const perm = attrInts(c.node, 'perm') ?? x?.map((_, k) => x.length - 1 - k);
    return { outputs: [{ dtype: c.in(0).dtype, shape: x && perm!.map((p) => x[p]) }] };
  },
  Concat: (c) => {
    const shapes = c.node.inputs.map((_, i) => c.in(i).shape);
    const vals = c.node.inputs.map((_, i) => c.values(i));
    const values = vals.every((v) => v) ? vals.flatMap((v) => v!) : undefined;
    if (shapes.some((s) => !s)) return { outputs: [{ dtype: c.in(0).dtype }], values };
    const axis = normAxis(attrInt(c.node, 'axis', 0), shapes[0]!.length);
    const along = shapes.map((s) => s![axis]);
    const p = product(along);
    const out = [...shapes[0]!];
    out[axis] = p.syms.length === 0 ? along.reduce((a, b) => (a as number) + (b as number), 0) : `${c.node.name}_c`;
    return { outputs: [{ dtype: c.in(0).dtype, shape: out }], values };
  },
  Slice: (c) => {
    const x = c.in(0).shape;
    const starts = c.values(1);
    const ends = c.values(2);
    const axes = c.has(3) ? c.values(3) : x?.map((_, k) => k).slice(0, starts?.length);
    const steps = c.has(4) ? c.values(4) : starts?.map(() => 1);
    if (!x || !starts || !ends || !axes || !steps) return { outputs: [{ dtype: c.in(0).dtype, shape: x?.map((d, k) => (axes && !(axes as Dim[]).includes(k) && !(axes as Dim[]).includes(k - x.length) ? d : `${c.node.name}_s${k}`)) }] };
    const out = [...x];
    const srcVals = c.values(0);
    let values = srcVals ? [...srcVals] : undefined;
    axes.forEach((a, i) => {
      const ax = normAxis(a as number, x.length);
      const dim = x[ax];
      const [s, e, st] = [starts[i], ends[i], steps[i]];
      if (typeof dim !== 'number' || typeof s !== 'number' || typeof e !== 'number' || typeof st !== 'number') { out[ax] = `${c.node.name}_s${ax}`; values = undefined; return; }
      const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
      const norm = (v: number) => (v < 0 ? v + dim : v);
      const [b, f] = st > 0 ? [clamp(norm(s), 0, dim), clamp(norm(e), 0, dim)] : [clamp(norm(s), -1, dim - 1), clamp(norm(e), -1, dim - 1)];
      out[ax] = Math.max(0, Math.ceil((f - b) / st));
      if (values && ax === 0) { const picked: Dim[] = []; for (let k = b; st > 0 ? k < f : k > f; k += st) picked.push(values[k]); values = picked; }
    });
    return { outputs: [{ dtype: c.in(0).dtype, shape: out }], values };
  },
  Squeeze: (c) => {
    const x = c.in(0).shape;
    const axes = (attrInts(c.node, 'axes') ?? (c.has(1) ? c.values(1) : undefined)) as number[] | undefined;
    if (!x) return { outputs: [{ dtype: c.in(0).dtype }] };
    const set = new Set((axes ?? x.flatMap((d, k) => (d === 1 ? [k] : []))).map((a) => normAxis(a, x.length)));
    return { outputs: [{ dtype: c.in(0).dtype, shape: x.filter((_, k) => !set.has(k)) }], values: c.values(0) };
  },
  Unsqueeze: (c) => {
    const x = c.in(0).shape;
    const axes = (attrInts(c.node, 'axes') ?? c.values(1)) as number[] | undefined;
    if (!x || !axes) return { outputs: [{ dtype: c.in(0).dtype }] };
    const rank = x.length + axes.length;
    const set = new Set(axes.map((a) => normAxis(a, rank)));
    const out: Dim[] = [];
    let k = 0;
    for (let r = 0; r < rank; r++) out.push(set.has(r) ? 1 : x[k++]);
    return { outputs: [{ dtype: c.in(0).dtype, shape: out }], values: c.values(0) };
  },
  ReduceMean: reduce, ReduceSum: reduce, ReduceMax: reduce, ReduceMin: reduce, ReduceLogSumExp: reduce, ReduceSumSquare: reduce, ReduceProd: reduce,
  Pad: (c) => {
    const x = c.in(0).shape;
    const pads = (attrInts(c.node, 'pads') ?? c.values(1)) as Dim[] | undefined;
    if (!x || !pads || c.has(3)) return { outputs: [{ dtype: c.in(0).dtype, shape: x?.map((_, k) => `${c.node.name}_p${k}`) }] };
    return { outputs: [{ dtype: c.in(0).dtype, shape: x.map((d, k) => (typeof d === 'number' && typeof pads[k] === 'number' && typeof pads[k + x.length] === 'number' ? d + (pads[k] as number) + (pads[k + x.length] as number) : pads[k] === 0 && pads[k + x.length] === 0 ? d : `${c.node.name}_p${k}`)) }] };
  },
  Shape: (c) => {
    const x = c.in(0).shape;
    const start = attrInt(c.node, 'start', 0);
    const endAttr = c.node.attrs.end;
    const vals = x && x.slice(normAxis(start, x.length), endAttr && 'i' in endAttr ? normAxis(endAttr.i, x.length) : x.length);
    return { outputs: [{ dtype: 'int64', shape: [vals ? vals.length : `${c.node.name}_n`] }], values: vals };
  },
  Size: (c) => { const x = c.in(0).shape; const p = x && product(x); return { outputs: [{ dtype: 'int64', shape: [] }], values: p && p.syms.length === 0 ? [p.num] : undefined }; },
  Gather: (c) => {
    const x = c.in(0).shape;
    const idx = c.in(1).shape;
    const axis = attrInt(c.node, 'axis', 0);
    if (!x || !idx) return { outputs: [{ dtype: c.in(0).dtype }] };
    const ax = normAxis(axis, x.length);
    const shape = [...x.slice(0, ax), ...idx, ...x.slice(ax + 1)];
    const src = c.values(0);
    const iv = c.values(1);
    const values = src && iv && ax === 0 && iv.every((i) => typeof i === 'number') ? iv.map((i) => src[normAxis(i as number, src.length)]) : undefined;
    return { outputs: [{ dtype: c.in(0).dtype, shape }], values };
  },
  GatherElements: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.in(1).shape }] }),
  ScatterElements: same, ScatterND: same,
  Constant: (c) => {
    const a = c.node.attrs;
    if (a.value && 't' in a.value) {
      const t = a.value.t;
      return { outputs: [{ dtype: t.dtype, shape: t.dims }], values: t.dims.length <= 1 && (t.dtype === 'int64' || t.dtype === 'int32') ? intValues(t) : undefined };
    }
    if (a.value_int && 'i' in a.value_int) return { outputs: [{ dtype: 'int64', shape: [] }], values: [a.value_int.i] };
    if (a.value_ints && 'ints' in a.value_ints) return { outputs: [{ dtype: 'int64', shape: [a.value_ints.ints.length] }], values: a.value_ints.ints };
    if (a.value_float && 'f' in a.value_float) return { outputs: [{ dtype: 'float', shape: [] }] };
    if (a.value_floats && 'floats' in a.value_floats) return { outputs: [{ dtype: 'float', shape: [a.value_floats.floats.length] }] };
    throw new UserError(`Constant node ${c.node.name} uses an attribute form ort-dann does not read`);
  },
  ConstantOfShape: (c) => {
    const v = c.node.attrs.value;
    const dtype = v && 't' in v ? v.t.dtype : 'float';
    const shape = c.values(0);
    const fill = v && 't' in v && (dtype === 'int64' || dtype === 'int32') ? intValues(v.t)[0] : undefined;
    const values = fill !== undefined && shape?.length === 1 && typeof shape[0] === 'number' && shape[0] <= 64 ? new Array<Dim>(shape[0]).fill(fill) : undefined;
    return { outputs: [{ dtype, shape }], values };
  },
  Expand: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: c.values(1) ? broadcastShapes([c.in(0).shape, c.values(1)]) : undefined }] }),
  Tile: (c) => { const x = c.in(0).shape; const r = c.values(1); return { outputs: [{ dtype: c.in(0).dtype, shape: x && r ? x.map((d, k) => (typeof d === 'number' && typeof r[k] === 'number' ? d * (r[k] as number) : r[k] === 1 ? d : `${c.node.name}_t${k}`)) : undefined }] }; },
  Range: (c) => ({ outputs: [{ dtype: c.in(0).dtype, shape: [`${c.node.name}_n`] }] }),
  OneHot: (c) => {
    const idx = c.in(0).shape;
    const depth = c.values(1);
    const axis = attrInt(c.node, 'axis', -1);
    if (!idx) return { outputs: [{ dtype: c.in(2).dtype }] };
    const out = [...idx];
    out.splice(axis < 0 ? idx.length + 1 + axis : axis, 0, depth?.[0] ?? `${c.node.name}_d`);
    return { outputs: [{ dtype: c.in(2).dtype, shape: out }] };
  },
  SoftmaxCrossEntropyLoss: (c) => {
    const reduction = c.node.attrs.reduction && 's' in c.node.attrs.reduction ? c.node.attrs.reduction.s : 'mean';
    const x = c.in(0);
    return { outputs: [{ dtype: x.dtype, shape: reduction === 'none' ? c.in(1).shape : [] }, { dtype: x.dtype, shape: x.shape }] };
  },
  Col2Im: (c) => {
    const x = c.in(0).shape;
    const img = c.values(1);
    const block = c.values(2);
    if (!x || !img || !block) return { outputs: [{ dtype: c.in(0).dtype }] };
    const blockSize = product(block);
    const ch = typeof x[1] === 'number' && blockSize.syms.length === 0 ? x[1] / blockSize.num : `${c.node.name}_c`;
    return { outputs: [{ dtype: c.in(0).dtype, shape: [x[0], ch, ...img] }] };
  },
};

/**
 * Infers dtype and shape of every value in graph order into `g.valueInfo` (from node `fromNode` on,
 * so emitters can keep it current incrementally). Ops without a rule are
 * left untyped (the autodiff reports them by name if it needs them).
 */
export function inferShapes(g: Graph, symbolic = new Map<string, Dim[]>(), fromNode = 0): Map<string, Dim[]> {
  for (const [name, t] of g.initializers) {
    if (symbolic.has(name)) continue;
    if ((t.dtype === 'int64' || t.dtype === 'int32') && t.dims.length <= 1 && t.data.length <= 64) symbolic.set(name, intValues(t));
  }
  const ctxFor = (node: Node): ShapeContext => ({
    g, node,
    has: (i) => !!node.inputs[i],
    in: (i) => {
      const info = g.info(node.inputs[i]);
      if (info) return info;
      const producer = g.nodes.find((n) => n.outputs.includes(node.inputs[i]));
      if (producer && !rules[producer.op]) throw unsupportedOp(producer);
      throw new UserError(`node ${node.name} (${node.op}) reads ${node.inputs[i]}, whose type is unknown`);
    },
    values: (i) => (node.inputs[i] ? symbolic.get(node.inputs[i]) : undefined),
  });
  for (const node of g.nodes.slice(fromNode)) {
    const rule = rules[node.op];
    if (!rule) continue;
    let result: Inferred;
    try {
      result = rule(ctxFor(node));
    } catch (e) {
      if (e instanceof UserError) throw e;
      continue; // a missing input type: leave this node's outputs untyped
    }
    node.outputs.forEach((o, k) => {
      const r = result.outputs[k];
      if (o && r) g.valueInfo.set(o, { name: o, dtype: r.dtype, shape: r.shape });
    });
    if (result.values && node.outputs[0]) symbolic.set(node.outputs[0], result.values);
  }
  return symbolic;
}

export function isFloatType(dtype: DType): boolean {
  return dtype === 'float' || dtype === 'double' || dtype === 'float16';
}

export { DataType };
