/**
 * A small mutable graph IR over ModelProto: nodes with plain attributes, initializers as host tensors,
 * and value infos (dtype + shape, dims numeric or symbolic). The autodiff and the model builders work
 * on this; only proto.ts knows the wire format.
 */
import { UserError } from '../errors.ts';
import {
  type AttributeProto, type DType, type HostTensor, type ModelProto, type NodeProto, type ValueInfoProto,
  DataType, dtypeFromCode, onnx, tensorFromProto, tensorToProto, toNumber,
} from './proto.ts';

/** A dimension: a number when known, a symbol (e.g. "N") when it varies at run time. */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  dtype: DType;
  shape?: Dim[];
}

export type AttrValue =
  | { i: number } | { f: number } | { s: string }
  | { ints: number[] } | { floats: number[] } | { strings: string[] }
  | { t: HostTensor };

export interface Node {
  op: string;
  /** '' for ai.onnx. */
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

export const DEFAULT_OPSET = 17;

export class Graph {
  name = 'graph';
  nodes: Node[] = [];
  inputs: ValueInfo[] = [];
  outputs: ValueInfo[] = [];
  initializers = new Map<string, HostTensor>();
  /** Known types of intermediate values (filled by shape inference). */
  valueInfo = new Map<string, ValueInfo>();
  opset = DEFAULT_OPSET;
  /** Non-default opset imports, e.g. a marker domain that must be lowered before saving. */
  extraOpsets = new Map<string, number>();
  private counter = 0;
  private taken = new Set<string>();

  /** A value name not used anywhere in the graph yet. */
  fresh(prefix: string): string {
    if (this.taken.size === 0) this.indexNames();
    let name: string;
    do name = `${prefix}_${this.counter++}`; while (this.taken.has(name));
    this.taken.add(name);
    return name;
  }

  private indexNames(): void {
    for (const v of this.inputs) this.taken.add(v.name);
    for (const k of this.initializers.keys()) this.taken.add(k);
    for (const n of this.nodes) {
      for (const o of n.outputs) this.taken.add(o);
      this.taken.add(n.name);
    }
    this.taken.add('');
  }

  reserve(name: string): void {
    this.taken.add(name);
  }

  /** Type of a value: graph input, initializer or inferred intermediate. */
  info(name: string): ValueInfo | undefined {
    const init = this.initializers.get(name);
    if (init) return { name, dtype: init.dtype, shape: init.dims };
    return this.valueInfo.get(name) ?? this.inputs.find((v) => v.name === name);
  }

  producers(): Map<string, Node> {
    const m = new Map<string, Node>();
    for (const n of this.nodes) for (const o of n.outputs) if (o) m.set(o, n);
    return m;
  }

  consumers(): Map<string, Node[]> {
    const m = new Map<string, Node[]>();
    for (const n of this.nodes) for (const i of n.inputs) if (i) (m.get(i) ?? m.set(i, []).get(i)!).push(n);
    return m;
  }

  /** Drops nodes and initializers that no graph output depends on. */
  prune(): void {
    const needed = new Set(this.outputs.map((o) => o.name));
    const kept: Node[] = [];
    for (let k = this.nodes.length - 1; k >= 0; k--) {
      const n = this.nodes[k];
      if (n.outputs.some((o) => needed.has(o))) {
        kept.push(n);
        for (const i of n.inputs) if (i) needed.add(i);
      }
    }
    this.nodes = kept.reverse();
    for (const k of [...this.initializers.keys()]) if (!needed.has(k)) this.initializers.delete(k);
  }

  /** Orders nodes so every value is produced before use; throws on cycles. */
  sortTopologically(): void {
    const available = new Set<string>([...this.inputs.map((v) => v.name), ...this.initializers.keys(), '']);
    const pending = [...this.nodes];
    const ordered: Node[] = [];
    while (pending.length > 0) {
      const before = pending.length;
      for (let k = 0; k < pending.length; k++) {
        const n = pending[k];
        if (n.inputs.every((i) => available.has(i))) {
          ordered.push(n);
          for (const o of n.outputs) available.add(o);
          pending.splice(k--, 1);
        }
      }
      if (pending.length === before) {
        const n = pending[0];
        throw new UserError(`graph ${this.name}: node ${n.name} (${n.op}) reads ${n.inputs.filter((i) => !available.has(i)).join(', ')}, which nothing produces`);
      }
    }
    this.nodes = ordered;
  }

  static fromModel(model: ModelProto): Graph {
    const g = new Graph();
    const gp = model.graph;
    if (!gp) throw new UserError('model has no graph');
    g.name = gp.name || 'graph';
    for (const o of model.opsetImport ?? []) {
      const domain = o.domain ?? '';
      if (domain === '' || domain === 'ai.onnx') g.opset = toNumber(o.version);
      else g.extraOpsets.set(domain, toNumber(o.version));
    }
    for (const t of gp.initializer ?? []) g.initializers.set(t.name!, tensorFromProto(t));
    g.inputs = (gp.input ?? []).filter((v) => !g.initializers.has(v.name!)).map(valueInfoFromProto);
    g.outputs = (gp.output ?? []).map(valueInfoFromProto);
    for (const v of gp.valueInfo ?? []) g.valueInfo.set(v.name!, valueInfoFromProto(v));
    let unnamed = 0;
    g.nodes = (gp.node ?? []).map((n) => nodeFromProto(n, () => `node_${unnamed++}`));
    return g;
  }

  toModel(options: { producer?: string; metadata?: Record<string, string>; irVersion?: number; docString?: string } = {}): ModelProto {
    const opsetImport = [{ domain: '', version: this.opset }, ...[...this.extraOpsets].map(([domain, version]) => ({ domain, version }))];
    return {
      irVersion: options.irVersion ?? (this.opset >= 21 ? 10 : 8),
      producerName: options.producer ?? 'ort-dann',
      producerVersion: '0.1.0',
      docString: options.docString,
      opsetImport,
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: this.nodes.map(nodeToProto),
        initializer: [...this.initializers].map(([name, t]) => tensorToProto(name, t)),
        input: this.inputs.map(valueInfoToProto),
        output: this.outputs.map((o) => valueInfoToProto(this.info(o.name) ? { ...o, ...pickKnown(this.info(o.name)!, o) } : o)),
      },
    };
  }
}

function pickKnown(inferred: ValueInfo, declared: ValueInfo): ValueInfo {
  return { name: declared.name, dtype: declared.dtype ?? inferred.dtype, shape: declared.shape ?? inferred.shape };
}

function valueInfoFromProto(v: ValueInfoProto): ValueInfo {
  const tt = v.type?.tensorType;
  const dtype = tt?.elemType ? dtypeFromCode(tt.elemType) : 'float';
  const shape = tt?.shape ? (tt.shape.dim ?? []).map((d, k) => (d.dimParam ? d.dimParam : d.dimValue !== undefined && d.dimValue !== null ? toNumber(d.dimValue) : `${v.name}_d${k}`)) : undefined;
  return { name: v.name!, dtype, shape };
}

function valueInfoToProto(v: ValueInfo): ValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DataType[v.dtype],
        shape: v.shape ? { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } : undefined,
      },
    },
  };
}

const AttrType = onnx.AttributeProto.AttributeType;

const utf8 = new TextDecoder();

function nodeFromProto(n: NodeProto, autoName: () => string): Node {
  const attrs: Record<string, AttrValue> = {};
  for (const a of n.attribute ?? []) attrs[a.name!] = attrFromProto(a, n);
  return {
    op: n.opType!, domain: n.domain ?? '', name: n.name || autoName(),
    inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])], attrs,
  };
}

function attrFromProto(a: AttributeProto, n: NodeProto): AttrValue {
  switch (a.type) {
    case AttrType.FLOAT: return { f: a.f ?? 0 };
    case AttrType.INT: return { i: toNumber(a.i) };
    case AttrType.STRING: return { s: utf8.decode(a.s ?? new Uint8Array()) };
    case AttrType.TENSOR: return { t: tensorFromProto(a.t!) };
    case AttrType.FLOATS: return { floats: [...(a.floats ?? [])] };
    case AttrType.INTS: return { ints: (a.ints ?? []).map(toNumber) };
    case AttrType.STRINGS: return { strings: (a.strings ?? []).map((s) => utf8.decode(s)) };
    default: throw new UserError(`node ${n.name} (${n.opType}) has attribute ${a.name} of type ${a.type}, which ort-dann does not handle (subgraphs are not supported)`);
  }
}

function nodeToProto(n: Node): NodeProto {
  return {
    opType: n.op, domain: n.domain || undefined, name: n.name, input: n.inputs, output: n.outputs,
    attribute: Object.entries(n.attrs).map(([name, v]) => attrToProto(name, v)),
  };
}

const utf8e = new TextEncoder();

function attrToProto(name: string, v: AttrValue): AttributeProto {
  if ('i' in v) return { name, type: AttrType.INT, i: v.i };
  if ('f' in v) return { name, type: AttrType.FLOAT, f: v.f };
  if ('s' in v) return { name, type: AttrType.STRING, s: utf8e.encode(v.s) };
  if ('ints' in v) return { name, type: AttrType.INTS, ints: v.ints };
  if ('floats' in v) return { name, type: AttrType.FLOATS, floats: v.floats };
  if ('strings' in v) return { name, type: AttrType.STRINGS, strings: v.strings.map((s) => utf8e.encode(s)) };
  return { name, type: AttrType.TENSOR, t: tensorToProto(name, v.t) };
}

export function attrInt(n: Node, name: string, fallback: number): number {
  const a = n.attrs[name];
  return a && 'i' in a ? a.i : fallback;
}

export function attrFloat(n: Node, name: string, fallback: number): number {
  const a = n.attrs[name];
  return a && 'f' in a ? a.f : fallback;
}

export function attrInts(n: Node, name: string): number[] | undefined {
  const a = n.attrs[name];
  return a && 'ints' in a ? a.ints : undefined;
}

export function attrString(n: Node, name: string, fallback: string): string {
  const a = n.attrs[name];
  return a && 's' in a ? a.s : fallback;
}
