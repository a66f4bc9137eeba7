/**
 * The one-line answer for an op ort-dann cannot type or differentiate: the node, the op, and the
 * nearest op it does support (the list of supported ops is in docs/autodiff.md).
 */
import { UserError } from '../errors.ts';
import { type Node } from './graph.ts';

const ALTERNATIVES: Record<string, string> = {
  Gelu: 'export with opset 17 or lower, where torch writes GELU with Erf',
  Elu: 'use LeakyRelu or SiLU (Sigmoid and Mul)',
  Selu: 'use LeakyRelu or SiLU (Sigmoid and Mul)',
  Celu: 'use LeakyRelu or SiLU (Sigmoid and Mul)',
  Mish: 'write it as x·Tanh(Softplus(x)), whose ops are supported',
  PRelu: 'use LeakyRelu (a fixed slope)',
  ThresholdedRelu: 'use Relu',
  Softsign: 'use Tanh',
  InstanceNormalization: 'use BatchNormalization or LayerNormalization',
  GroupNormalization: 'use BatchNormalization or LayerNormalization',
  LpNormalization: 'write it with ReduceSumSquare, Sqrt and Div',
  LRN: 'use BatchNormalization',
  Resize: 'use ConvTranspose for a learned upsampling',
  Upsample: 'use ConvTranspose for a learned upsampling',
  ConvTranspose: 'use a Conv on an input padded with zeros',
  ReduceMax: 'use MaxPool or GlobalMaxPool',
  ReduceMin: 'use MaxPool on the negated input',
  ReduceLogSumExp: 'use LogSoftmax',
  ReduceL2: 'use ReduceSumSquare and Sqrt',
  LpPool: 'use AveragePool',
  GlobalLpPool: 'use GlobalAveragePool',
  Einsum: 'use MatMul with Transpose and Reshape',
  GatherElements: 'use Gather along one axis',
  GatherND: 'use Gather along one axis',
  Tile: 'use Expand',
  Max: 'use Relu or Where',
  Min: 'use Relu or Where',
  Mean: 'use Sum and Div',
  Hardmax: 'use Softmax',
  NegativeLogLikelihoodLoss: 'use SoftmaxCrossEntropyLoss on the logits',
};

export function unsupportedOp(node: Node, why = 'which ort-dann cannot differentiate'): UserError {
  const op = `${node.domain && node.domain !== 'ai.onnx' ? `${node.domain}.` : ''}${node.op}`;
  const instead = ALTERNATIVES[node.op] ?? 'no supported op does the same; remove it from the path to the loss (supported ops: docs/autodiff.md)';
  return new UserError(`node ${node.name} uses op ${op}, ${why}; ${instead}`);
}
