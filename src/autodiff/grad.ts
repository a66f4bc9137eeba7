/**
 * Reverse-mode differentiation of an ONNX graph into more ONNX: appends, for a scalar loss, the
 * gradient of every requested value as new nodes and graph outputs. Gradients accumulate at fan-out
 * with Sum; nodes off the path between the requested values and the loss get no backward work.
 */
import { UserError } from '../errors.ts';
import { Builder } from '../onnx/builder.ts';
import { type Graph } from '../onnx/graph.ts';
import { unsupportedOp } from '../onnx/unsupported.ts';
import { inferShapes, isFloatType } from '../onnx/shapes.ts';
import { GradContext } from './context.ts';
import { lowerMarkers, prepareForDifferentiation } from './lower.ts';
import { gradientRules, nonDifferentiable, ruleKey } from './rules.ts';

export interface DifferentiateOptions {
  /** Name of the scalar loss value. */
  loss: string;
  /** Values (initializers or graph inputs) to differentiate with respect to. */
  wrt: string[];
  /** Output name of each gradient; default `<name>_grad`. */
  gradName?: (name: string) => string;
}

export function differentiate(g: Graph, options: DifferentiateOptions): Map<string, string> {
  const gradName = options.gradName ?? ((n: string) => `${n}_grad`);
  g.sortTopologically();
  inferShapes(g);
  prepareForDifferentiation(g);
  const symbolic = inferShapes(g);

  const lossInfo = g.info(options.loss);
  if (!lossInfo && !g.producers().has(options.loss)) throw new UserError(`loss ${options.loss} is not a value of the graph; name one of its outputs`);
  const lossShape = lossInfo?.shape;
  if (!lossShape) throw new UserError(`the shape of loss ${options.loss} is unknown: an op on its path has no shape rule (${g.producers().get(options.loss)?.op ?? 'input'}); build the loss from supported ops`);
  if (lossShape.some((d) => d !== 1)) throw new UserError(`loss ${options.loss} has shape [${lossShape ?? '?'}]; it must be a scalar (reduce it with ReduceMean or ReduceSum)`);
  for (const w of options.wrt) {
    const info = g.info(w);
    if (!info) throw new UserError(`cannot differentiate with respect to ${w}: no such input or initializer`);
    if (!isFloatType(info.dtype)) throw new UserError(`cannot differentiate with respect to ${w}: it is ${info.dtype}, not a float tensor`);
  }

  // Forward: values that depend on a requested one through differentiable float edges.
  const requiresGrad = new Set(options.wrt);
  const isFloat = (v: string) => { const i = g.info(v); return !!i && isFloatType(i.dtype); };
  for (const node of g.nodes) {
    if (nonDifferentiable.has(node.op)) continue;
    if (node.inputs.some((i) => requiresGrad.has(i))) for (const o of node.outputs) if (o && isFloat(o)) requiresGrad.add(o);
  }
  // Backward: values the loss depends on.
  const reachesLoss = new Set([options.loss]);
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const node = g.nodes[k];
    if (node.outputs.some((o) => reachesLoss.has(o))) for (const i of node.inputs) if (i) reachesLoss.add(i);
  }
  const needs = (v: string) => requiresGrad.has(v) && reachesLoss.has(v);

  const b = new Builder(g, 'grad');
  const contributions = new Map<string, string[]>();
  const add = (value: string, grad: string) => (contributions.get(value) ?? contributions.set(value, []).get(value)!).push(grad);
  const total = (value: string): string | undefined => {
    const parts = contributions.get(value);
    if (!parts || parts.length === 0) return undefined;
    if (parts.length > 1) contributions.set(value, [b.op('Sum', parts)]);
    return contributions.get(value)![0];
  };

  add(options.loss, b.constant('float', [1], lossShape as number[]));
  const forward = [...g.nodes];
  for (let k = forward.length - 1; k >= 0; k--) {
    const node = forward[k];
    if (!node.inputs.some((i) => i && needs(i))) continue;
    const emittedFrom = g.nodes.length;
    const outGrads = node.outputs.map((o) => (o ? total(o) : undefined));
    if (!outGrads.some(Boolean)) continue;
    const rule = gradientRules[ruleKey(node.op, node.domain)];
    if (!rule) throw unsupportedOp(node);
    const ctx = new GradContext(g, b, node, outGrads, needs, symbolic);
    const inGrads = rule(ctx);
    inferShapes(g, symbolic, emittedFrom);
    node.inputs.forEach((input, i) => {
      if (input && needs(input) && inGrads[i]) add(input, inGrads[i]!);
    });
  }

  const result = new Map<string, string>();
  for (const w of options.wrt) {
    const name = gradName(w);
    const grad = total(w);
    if (grad) b.op('Identity', [grad], {}, name);
    else b.op('ConstantOfShape', [b.op('Shape', [w])], { value: { t: { dtype: 'float', dims: [1], data: new Float32Array([0]) } } }, name);
    g.outputs.push({ name, dtype: g.info(w)!.dtype, shape: g.info(w)!.shape });
    result.set(w, name);
  }
  lowerMarkers(g);
  requireScatterReduction(g);
  elideIdentities(g, new Set(result.values()));
  inferShapes(g);
  return result;
}

/**
 * The MaxPool and Gather gradients scatter-add (ScatterElements/ScatterND `reduction`, opset 16).
 * Opsets 14 and 15 differ from 16 only in accepted types and in RoiAlign's default coordinate mode,
 * which is pinned, so such graphs move to 16; older ones must be re-exported.
 */
function requireScatterReduction(g: Graph): void {
  const scatters = g.nodes.some((n) => (n.op === 'ScatterElements' || n.op === 'ScatterND') && n.attrs.reduction);
  if (!scatters || g.opset >= 16) return;
  if (g.opset < 14) throw new UserError(`the model uses opset ${g.opset}; its MaxPool or Gather gradient needs opset 14 or later: re-export it with opset_version=14 (or later)`);
  for (const n of g.nodes) if (n.op === 'RoiAlign' && !n.attrs.coordinate_transformation_mode) n.attrs.coordinate_transformation_mode = { s: 'output_half_pixel' };
  g.opset = 16;
}

/**
 * Renames a gradient's producing node output to the requested name instead of copying it through an
 * Identity (each copy of a large gradient is a full memory pass).
 */
function elideIdentities(g: Graph, names: Set<string>): void {
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  const inputs = new Set([...g.inputs.map((v) => v.name), ...g.initializers.keys()]);
  const producers = g.producers();
  const consumers = g.consumers();
  g.nodes = g.nodes.filter((node) => {
    if (node.op !== 'Identity' || !names.has(node.outputs[0])) return true;
    const src = node.inputs[0];
    const producer = producers.get(src);
    if (!producer || inputs.has(src) || graphOutputs.has(src) || (consumers.get(src)?.length ?? 0) > 1 || producer.domain !== '') return true;
    producer.outputs = producer.outputs.map((o) => (o === src ? node.outputs[0] : o));
    return false;
  });
}
