/**
 * Finite-difference checking of generated backward graphs. The loss is Σ out·R for a fixed random R,
 * summed in float64 on the JS side so float32 rounding in ORT stays far below the tolerance; each
 * gradient is checked along random directions (a wrong element shows up with probability ~1).
 */
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { differentiate } from '../../src/autodiff/grad.ts';
import { Builder } from '../../src/onnx/builder.ts';
import { type Dim, Graph } from '../../src/onnx/graph.ts';
import { encodeModel } from '../../src/onnx/proto.ts';
import { inferShapes } from '../../src/onnx/shapes.ts';

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randn(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let k = 0; k < n; k++) out[k] = scale * Math.sqrt(-2 * Math.log(rand() + 1e-12)) * Math.cos(2 * Math.PI * rand());
  return out;
}

export interface GradCase {
  /** Float inputs, all differentiated unless listed in `constant`. */
  inputs: Record<string, number[]>;
  /** Non-differentiated float inputs (labels, masks). */
  constant?: Record<string, { dims: number[]; data: Float32Array }>;
  /** Emits the forward graph; returns the output to check. */
  build(b: Builder, g: Graph): string;
  /** Symbolic batch: dims given here replace input dims in the declared graph inputs. */
  declared?: Record<string, Dim[]>;
  /** Input values; random normal by default. */
  values?: Record<string, Float32Array>;
  seed?: number;
  eps?: number;
  rtol?: number;
  /** The backward is expected to be this multiple of the forward's derivative (−alpha for gradient reversal). */
  gradScale?: number;
}

const shape = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

export async function checkGradients(c: GradCase): Promise<{ maxRelErr: number; graph: Graph; session?: never }> {
  const rand = rng(c.seed ?? 1);
  const g = new Graph();
  const b = new Builder(g, 'fwd');
  for (const [name, dims] of Object.entries(c.inputs)) g.inputs.push({ name, dtype: 'float', shape: c.declared?.[name] ?? dims });
  for (const [name, t] of Object.entries(c.constant ?? {})) g.inputs.push({ name, dtype: 'float', shape: c.declared?.[name] ?? t.dims });
  const out = c.build(b, g);
  // Loss = ReduceSum(out · R): R is an input so the same graph serves the finite differences.
  inferShapes(g);
  const outRank = g.info(out)?.shape?.length ?? 0;
  g.inputs.push({ name: 'R', dtype: 'float', shape: Array.from({ length: outRank }, (_, k) => `r${k}`) });
  const weighted = b.op('Mul', [out, 'R']);
  const loss = b.op('ReduceSum', [weighted], { keepdims: 0 }, 'loss');
  g.outputs.push({ name: out, dtype: 'float' }, { name: loss, dtype: 'float' });
  const wrt = Object.keys(c.inputs);
  const grads = differentiate(g, { loss, wrt });
  const outShape = g.info(out)!.shape!;
  const values: Record<string, Float32Array> = {};
  for (const [name, dims] of Object.entries(c.inputs)) values[name] = c.values?.[name] ?? randn(shape(dims), rand);
  const outDims = outShape.map((d, k) => (typeof d === 'number' ? d : -1 - k));
  const session = await ort.InferenceSession.create(encodeModel(g.toModel()), { intraOpNumThreads: 1 });
  const feeds = (vals: Record<string, Float32Array>, r?: Float32Array, rDims?: number[]) => {
    const f: Record<string, ort.Tensor> = {};
    for (const [name, dims] of Object.entries(c.inputs)) f[name] = new ort.Tensor('float32', vals[name], dims);
    for (const [name, t] of Object.entries(c.constant ?? {})) f[name] = new ort.Tensor('float32', t.data, t.dims);
    if (r) f.R = new ort.Tensor('float32', r, rDims);
    return f;
  };
  // Probe run to learn the concrete output shape, then fix R.
  const probe = await session.run(feeds(values, new Float32Array([0]), outDims.map(() => 1)), [out]);
  const rDims = [...probe[out].dims];
  const R = randn(shape(rDims as number[]), rand);
  const lossOf = async (vals: Record<string, Float32Array>) => {
    const y = (await session.run(feeds(vals, R, rDims as number[]), [out]))[out].data as Float32Array;
    let s = 0;
    for (let k = 0; k < y.length; k++) s += y[k] * R[k];
    return s;
  };
  const analytic = await session.run(feeds(values, R, rDims as number[]), [...grads.values()]);
  const eps = c.eps ?? 1e-3;
  let maxRelErr = 0;
  for (const name of wrt) {
    const grad = analytic[grads.get(name)!].data as Float32Array;
    assert.equal(grad.length, values[name].length, `gradient of ${name} has the wrong size`);
    for (let trial = 0; trial < 3; trial++) {
      const dir = randn(grad.length, rand);
      let predicted = 0;
      for (let k = 0; k < grad.length; k++) predicted += grad[k] * dir[k];
      const shifted = (sign: number) => ({ ...values, [name]: values[name].map((v, k) => v + sign * eps * dir[k]) });
      const numeric = (c.gradScale ?? 1) * ((await lossOf(shifted(1))) - (await lossOf(shifted(-1)))) / (2 * eps);
      const err = Math.abs(numeric - predicted) / Math.max(1, Math.abs(numeric), Math.abs(predicted));
      maxRelErr = Math.max(maxRelErr, err);
      assert.ok(err < (c.rtol ?? 2e-3), `d loss/d ${name} along a random direction: analytic ${predicted}, finite difference ${numeric} (rel err ${err.toExponential(2)})`);
    }
  }
  await session.release();
  return { maxRelErr, graph: g };
}

/** ‖got − want‖₂ / ‖want‖₂: the tensor-level relative error of the parity tests. */
export function normErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let k = 0; k < want.length; k++) {
    diff += (got[k] - want[k]) ** 2;
    scale += want[k] ** 2;
  }
  return Math.sqrt(diff / Math.max(scale, 1e-300));
}
