/**
 * What a gradient rule sees, in the shorthand of ONNX Runtime's gradient builder: I(i) the node's
 * inputs, O(i) its outputs, GO(i) the gradient flowing into output i, and helpers that emit the
 * common subgraphs (reductions that undo broadcasting, shapes, constants).
 */
import { UserError } from '../errors.ts';
import { Builder } from '../onnx/builder.ts';
import { type Dim, type Graph, type Node, attrInt, attrFloat, attrInts } from '../onnx/graph.ts';
import { type HostTensor, intValues } from '../onnx/proto.ts';

export class GradContext {
  constructor(
    readonly g: Graph,
    readonly b: Builder,
    readonly node: Node,
    private readonly outGrads: (string | undefined)[],
    private readonly needsGrad: (name: string) => boolean,
    private readonly symbolic: Map<string, Dim[]>,
  ) {}

  I(i: number): string { return this.node.inputs[i]; }
  O(i: number): string { return this.node.outputs[i]; }
  /** Gradient of output i; a rule that reads one absent here cannot handle the outputs that are on the path. */
  GO(i = 0): string {
    const go = this.outGrads[i];
    if (!go) throw new UserError(`node ${this.node.name} (${this.node.op}): its output ${this.node.outputs.find((_, k) => this.outGrads[k])} lies on the path to the loss, which has no gradient rule; use only its output ${this.node.outputs[i]} there`);
    return go;
  }
  hasGO(i: number): boolean { return !!this.outGrads[i]; }
  /** Whether input i needs a gradient; rules skip work for inputs that do not. */
  needs(i: number): boolean { return !!this.node.inputs[i] && this.needsGrad(this.node.inputs[i]); }

  int(name: string, fallback: number): number { return attrInt(this.node, name, fallback); }
  float(name: string, fallback: number): number { return attrFloat(this.node, name, fallback); }
  ints(name: string): number[] | undefined { return attrInts(this.node, name); }

  shape(name: string): Dim[] {
    const s = this.g.info(name)?.shape;
    if (!s) throw new UserError(`node ${this.node.name} (${this.node.op}): the shape of ${name} is unknown, so its gradient cannot be built; give the model's inputs full shapes`);
    return s;
  }

  staticShape(name: string): number[] {
    const s = this.shape(name);
    if (s.some((d) => typeof d !== 'number')) throw new UserError(`node ${this.node.name} (${this.node.op}): ${name} has shape [${s}], but this gradient needs it fixed except for the batch; fix the input sizes`);
    return s as number[];
  }

  /** The constant value of an input (initializer, Constant node or folded shape glue), if known. */
  constInts(i: number): number[] | undefined {
    const name = this.node.inputs[i];
    if (!name) return undefined;
    const init = this.g.initializers.get(name);
    if (init) return intValues(init);
    const v = this.symbolic.get(name);
    return v && v.every((d) => typeof d === 'number') ? (v as number[]) : undefined;
  }

  constTensor(i: number): HostTensor | undefined {
    const name = this.node.inputs[i];
    if (!name) return undefined;
    const init = this.g.initializers.get(name);
    if (init) return init;
    const producer = this.g.nodes.find((n) => n.outputs.includes(name));
    const v = producer?.op === 'Constant' ? producer.attrs.value : undefined;
    return v && 't' in v ? v.t : undefined;
  }

  rank(name: string): number { return this.shape(name).length; }

  op(op: string, inputs: string[], attrs: Parameters<Builder['op']>[2] = {}): string {
    return this.b.op(op, inputs, attrs);
  }

  /** Shape of a value as an int64 tensor: constant when static, a Shape node otherwise. */
  shapeOf(name: string): string {
    const s = this.g.info(name)?.shape;
    if (s && s.every((d) => typeof d === 'number')) return this.b.ints(s as number[]);
    return this.op('Shape', [name]);
  }

  reduceSum(x: string, axes: number[], keepdims: boolean): string {
    if (axes.length === 0) return x;
    return this.op('ReduceSum', [x, this.b.ints(axes)], { keepdims: keepdims ? 1 : 0 });
  }

  reduceMean(x: string, axes: number[], keepdims: boolean): string {
    return this.g.opset >= 18
      ? this.op('ReduceMean', [x, this.b.ints(axes)], { keepdims: keepdims ? 1 : 0 })
      : this.op('ReduceMean', [x], { axes, keepdims: keepdims ? 1 : 0 });
  }

  reshapeLike(x: string, like: string): string {
    return this.op('Reshape', [x, this.shapeOf(like)]);
  }

  /** Sums a gradient shaped like the broadcast output back to the shape of input `to`. */
  unbroadcast(grad: string, gradShape: Dim[], to: string): string {
    const target = this.shape(to);
    const lead = gradShape.length - target.length;
    const axes: number[] = [];
    for (let k = 0; k < gradShape.length; k++) {
      if (k < lead) axes.push(k);
      else if (target[k - lead] === 1 && gradShape[k] !== 1) axes.push(k);
      else if (target[k - lead] !== gradShape[k] && typeof target[k - lead] === 'number' && typeof gradShape[k] === 'number') {
        throw new Error(`internal: cannot unbroadcast [${gradShape}] to [${target}]`);
      }
    }
    if (axes.length === 0) return grad;
    const summed = this.reduceSum(grad, axes, true);
    return lead === 0 ? summed : this.reshapeLike(summed, to);
  }

  /** Output shape of the node (output 0) for broadcasting rules. */
  outShape(i = 0): Dim[] { return this.shape(this.O(i)); }
}

export type GradRule = (c: GradContext) => (string | undefined)[];
