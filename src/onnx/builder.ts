/**
 * Typed emission of nodes into a Graph. Numbers become INT attributes unless wrapped with `float()`
 * (or named like a float attribute: epsilon, momentum, alpha, beta, ratio), because ORT rejects an
 * INT where the schema wants a FLOAT.
 */
import { type AttrValue, type Graph } from './graph.ts';
import { type DType, type HostTensor } from './proto.ts';

export type AttrInput = number | number[] | string | string[] | HostTensor | AttrValue;

const FLOAT_ATTRS = new Set(['epsilon', 'momentum', 'alpha', 'beta', 'ratio', 'gamma', 'bias', 'lambd']);

export const float = (f: number): AttrValue => ({ f });
export const floats = (values: number[]): AttrValue => ({ floats: values });

function toAttr(name: string, v: AttrInput): AttrValue {
  if (typeof v === 'number') return FLOAT_ATTRS.has(name) ? { f: v } : { i: v };
  if (typeof v === 'string') return { s: v };
  if (Array.isArray(v)) return typeof v[0] === 'string' ? { strings: v as string[] } : { ints: v as number[] };
  if ('dtype' in v && 'dims' in v) return { t: v as HostTensor };
  return v as AttrValue;
}

export class Builder {
  private constants = new Map<string, string>();

  constructor(readonly g: Graph, readonly prefix = 'n') {}

  /** Emits one node and returns its single output's name. */
  op(op: string, inputs: string[], attrs: Record<string, AttrInput> = {}, outputName?: string): string {
    return this.opN(op, inputs, attrs, [outputName ?? this.g.fresh(`${this.prefix}/${op}`)])[0];
  }

  /** Emits one node with several outputs; a count gives fresh names, '' marks an unused optional output. */
  opN(op: string, inputs: string[], attrs: Record<string, AttrInput>, outputs: number | string[], domain = ''): string[] {
    const outs = typeof outputs === 'number' ? Array.from({ length: outputs }, () => this.g.fresh(`${this.prefix}/${op}`)) : outputs;
    for (const o of outs) if (o) this.g.reserve(o);
    const converted: Record<string, AttrValue> = {};
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) converted[k] = toAttr(k, v);
    this.g.nodes.push({ op, domain, name: this.g.fresh(`${this.prefix}/${op}_node`), inputs, outputs: outs, attrs: converted });
    return outs;
  }

  /** A constant initializer, shared between identical requests. */
  constant(dtype: DType, values: ArrayLike<number>, dims: number[]): string {
    const key = `${dtype}|${dims.join(',')}|${Array.from(values).join(',')}`;
    const known = key.length < 4096 ? this.constants.get(key) : undefined;
    if (known) return known;
    const name = this.g.fresh(`${this.prefix}/const`);
    const data = dtype === 'int64' ? BigInt64Array.from(Array.from(values), (v) => BigInt(v))
      : dtype === 'float' ? Float32Array.from(values)
      : dtype === 'bool' ? Uint8Array.from(values)
      : Int32Array.from(values);
    this.g.initializers.set(name, { dtype, dims, data });
    if (key.length < 4096) this.constants.set(key, name);
    return name;
  }

  /** int64 1-D constant (axes, shapes, pads). */
  ints(values: number[]): string {
    return this.constant('int64', values, [values.length]);
  }

  /** float32 scalar (rank 0) constant. */
  scalar(value: number): string {
    return this.constant('float', [value], []);
  }
}
