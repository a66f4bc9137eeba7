/**
 * Layer helpers that emit ONNX for the DANN model, registering each parameter under its PyTorch
 * state_dict key. In 'train' mode BatchNorm uses batch statistics and outputs updated running stats;
 * in 'eval' mode it uses the running stats, as model.eval() does.
 */
import { Builder, float } from '../onnx/builder.ts';
import { type Graph } from '../onnx/graph.ts';

export type Mode = 'train' | 'eval';

export type InitKind =
  | { kind: 'kaiming-normal-fan-out' }
  | { kind: 'uniform-fan-in'; fanIn: number }
  | { kind: 'ones' } | { kind: 'zeros' };

export interface ParamEntry {
  name: string;
  shape: number[];
  init: InitKind;
  isBatchNorm: boolean;
}

export interface BufferEntry {
  name: string;
  shape: number[];
  dtype: 'float' | 'int64';
  init: 'zeros' | 'ones';
  /** The graph output holding this buffer's value after a training step. */
  updatedBy?: string;
}

export class Net {
  readonly b: Builder;
  readonly params: ParamEntry[] = [];
  readonly buffers: BufferEntry[] = [];
  /** Every parameter and buffer in PyTorch's state_dict order (per module: params, then buffers). */
  readonly stateOrder: string[] = [];

  constructor(readonly g: Graph, readonly mode: Mode) {
    this.b = new Builder(g, 'm');
  }

  private param(name: string, shape: number[], init: InitKind, isBatchNorm = false): string {
    this.params.push({ name, shape, init, isBatchNorm });
    this.stateOrder.push(name);
    this.g.inputs.push({ name, dtype: 'float', shape });
    return name;
  }

  /**
   * torchvision ResNet convs: kaiming_normal_(fan_out, relu); other Conv2d keep PyTorch's default init,
   * unless `torchvisionInit` (torchvision's MobileNet/EfficientNet: kaiming fan_out, zero bias).
   */
  conv(name: string, x: string, cin: number, cout: number, k: number, stride: number, pad: number, bias: boolean, opts: { groups?: number; torchvisionInit?: boolean } = {}): string {
    const groups = opts.groups ?? 1;
    const fanIn = (cin / groups) * k * k;
    const w = this.param(`${name}.weight`, [cout, cin / groups, k, k], bias && !opts.torchvisionInit ? { kind: 'uniform-fan-in', fanIn } : { kind: 'kaiming-normal-fan-out' });
    const inputs = [x, w];
    if (bias) inputs.push(this.param(`${name}.bias`, [cout], opts.torchvisionInit ? { kind: 'zeros' } : { kind: 'uniform-fan-in', fanIn }));
    return this.b.op('Conv', inputs, { kernel_shape: [k, k], strides: [stride, stride], pads: [pad, pad, pad, pad], ...(groups > 1 ? { group: groups } : {}) });
  }

  /** PyTorch's BatchNorm2d; torchvision's MobileNetV3 uses eps 1e-3 and momentum 0.01. */
  batchNorm(name: string, x: string, c: number, opts: { eps?: number; momentum?: number } = {}): string {
    const scale = this.param(`${name}.weight`, [c], { kind: 'ones' }, true);
    const bias = this.param(`${name}.bias`, [c], { kind: 'zeros' }, true);
    const mean: BufferEntry = { name: `${name}.running_mean`, shape: [c], dtype: 'float', init: 'zeros' };
    const variance: BufferEntry = { name: `${name}.running_var`, shape: [c], dtype: 'float', init: 'ones' };
    this.buffers.push(mean, variance, { name: `${name}.num_batches_tracked`, shape: [], dtype: 'int64', init: 'zeros' });
    this.stateOrder.push(mean.name, variance.name, `${name}.num_batches_tracked`);
    for (const buf of [mean, variance]) this.g.inputs.push({ name: buf.name, dtype: 'float', shape: buf.shape });
    // PyTorch's momentum 0.1 is ONNX's 0.9 (the weight of the old running value).
    const epsilon = float(opts.eps ?? 1e-5);
    if (this.mode === 'eval') return this.b.op('BatchNormalization', [x, scale, bias, mean.name, variance.name], { epsilon });
    mean.updatedBy = `${mean.name}.updated`;
    variance.updatedBy = `${variance.name}.updated`;
    return this.b.opN('BatchNormalization', [x, scale, bias, mean.name, variance.name], { epsilon, momentum: float(1 - (opts.momentum ?? 0.1)), training_mode: 1 },
      [this.g.fresh(`${name}/bn`), mean.updatedBy, variance.updatedBy])[0];
  }

  linear(name: string, x: string, inF: number, outF: number): string {
    const w = this.param(`${name}.weight`, [outF, inF], { kind: 'uniform-fan-in', fanIn: inF });
    const bias = this.param(`${name}.bias`, [outF], { kind: 'uniform-fan-in', fanIn: inF });
    return this.b.op('Gemm', [x, w, bias], { transB: 1 });
  }

  relu(x: string): string {
    return this.b.op('Relu', [x]);
  }

  /** Dropout with an explicit keep-mask input (1 = keep), scaled by 1/(1−p) like PyTorch; identity in eval. */
  dropout(x: string, mask: string | undefined, p: number): string {
    if (this.mode === 'eval' || !mask || p === 0) return x;
    return this.b.op('Mul', [this.b.op('Mul', [x, mask]), this.b.scalar(1 / (1 - p))]);
  }
}
