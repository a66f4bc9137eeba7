/**
 * Layer helpers that emit ONNX for the DANN model, registering each parameter under its PyTorch
 * state_dict key. In 'train' mode BatchNorm uses batch statistics and outputs updated running stats;
 * in 'eval' mode it uses the running stats, as model.eval() does.
 *
 * With per-domain BatchNorm statistics (docs/domain-batchnorm.md) each BatchNorm keeps two sets of
 * running statistics, `<bn>.running_mean/var` (source) and `<bn>.target_running_mean/var` (target),
 * and shares its weight and bias between the domains. Train: the first `n_source` rows are
 * normalised with their own batch statistics, the rest with theirs. Eval: the source rows read the
 * source running statistics, the target rows the target ones. `deploy` builds the single-domain
 * graph that export folds: every row reads the statistics of the domain named.
 */
import { MARKER_DOMAIN } from '../autodiff/rules.ts';
import { Builder, float } from '../onnx/builder.ts';
import { type Graph } from '../onnx/graph.ts';
import { type Domain } from '../onnx/manifest.ts';

export type Mode = 'train' | 'eval';

/** How the rows of a batch split into domains, for per-domain BatchNorm statistics. */
export interface DomainSplit {
  /** int64 [1]: the number of leading source rows. */
  nSource: string;
  /** bool scalar: the batch has target rows (train graphs, which update the target statistics). */
  hasTarget?: string;
}

export interface NetOptions {
  /** Per-domain BatchNorm statistics; absent: one set of statistics over all rows. */
  perDomain?: {
    /** The rows of a batch by domain (train and eval graphs). */
    split?: DomainSplit;
    /** Eval mode: the domain whose running statistics every row reads (the graph export folds). */
    deploy?: Domain;
  };
}

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

interface RunningStats {
  mean: BufferEntry;
  variance: BufferEntry;
}

export class Net {
  readonly b: Builder;
  readonly params: ParamEntry[] = [];
  readonly buffers: BufferEntry[] = [];
  /** Every parameter and buffer in PyTorch's state_dict order (per module: params, then buffers). */
  readonly stateOrder: string[] = [];

  constructor(readonly g: Graph, readonly mode: Mode, readonly options: NetOptions = {}) {
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
    const source = this.runningStats(name, '', c);
    this.buffers.push({ name: `${name}.num_batches_tracked`, shape: [], dtype: 'int64', init: 'zeros' });
    this.stateOrder.push(`${name}.num_batches_tracked`);
    const perDomain = this.options.perDomain;
    const target = perDomain && this.runningStats(name, 'target_', c);
    // PyTorch's momentum 0.1 is ONNX's 0.9 (the weight of the old running value).
    const epsilon = float(opts.eps ?? 1e-5);
    const momentum = float(1 - (opts.momentum ?? 0.1));
    const { b } = this;
    if (this.mode === 'eval') {
      const bn = (v: string, stats: RunningStats) => b.op('BatchNormalization', [v, scale, bias, stats.mean.name, stats.variance.name], { epsilon });
      if (!target) return bn(x, source);
      if (perDomain?.deploy) return bn(x, perDomain.deploy === 'target' ? target : source);
      const [xs, xt] = this.splitRows(x);
      return b.op('Concat', [bn(xs, source), bn(xt, target)], { axis: 0 });
    }
    const train = (v: string, stats: RunningStats, updated: [string, string]) => b.opN('BatchNormalization', [v, scale, bias, stats.mean.name, stats.variance.name],
      { epsilon, momentum, training_mode: 1 }, [this.g.fresh(`${name}/bn`), ...updated])[0];
    source.mean.updatedBy = `${source.mean.name}.updated`;
    source.variance.updatedBy = `${source.variance.name}.updated`;
    if (!target) return train(x, source, [source.mean.updatedBy, source.variance.updatedBy]);
    // One marker for both domains: the autodiff lowers it to per-domain statistics without slicing x (lower.ts).
    const { nSource, hasTarget } = this.domainSplit();
    if (!hasTarget) throw new Error('internal: a per-domain BatchNorm train graph needs to know whether a batch has target rows');
    const fromTarget: [string, string] = [this.g.fresh(`${target.mean.name}.batch`), this.g.fresh(`${target.variance.name}.batch`)];
    const [y] = b.opN('DomainBatchNormalization', [x, scale, bias, source.mean.name, source.variance.name, target.mean.name, target.variance.name, nSource],
      { epsilon, momentum }, [this.g.fresh(`${name}/bn`), source.mean.updatedBy, source.variance.updatedBy, ...fromTarget], MARKER_DOMAIN);
    this.g.extraOpsets.set(MARKER_DOMAIN, 1);
    // A batch without target rows (a source-only run) gives the target statistics the source update,
    // so such a run's target statistics stay equal to its source ones.
    target.mean.updatedBy = b.op('Where', [hasTarget, fromTarget[0], source.mean.updatedBy], {}, `${target.mean.name}.updated`);
    target.variance.updatedBy = b.op('Where', [hasTarget, fromTarget[1], source.variance.updatedBy], {}, `${target.variance.name}.updated`);
    return y;
  }

  /** Registers one set of running statistics as buffers and graph inputs. */
  private runningStats(name: string, prefix: '' | 'target_', c: number): RunningStats {
    const mean: BufferEntry = { name: `${name}.${prefix}running_mean`, shape: [c], dtype: 'float', init: 'zeros' };
    const variance: BufferEntry = { name: `${name}.${prefix}running_var`, shape: [c], dtype: 'float', init: 'ones' };
    this.buffers.push(mean, variance);
    this.stateOrder.push(mean.name, variance.name);
    for (const buf of [mean, variance]) this.g.inputs.push({ name: buf.name, dtype: 'float', shape: buf.shape });
    return { mean, variance };
  }

  /** The source rows (the first n_source) and the target rows (the rest) of x, for the eval graph. */
  private splitRows(x: string): [string, string] {
    const { b } = this;
    const { nSource } = this.domainSplit();
    return [b.op('Slice', [x, b.ints([0]), nSource, b.ints([0])]), b.op('Slice', [x, nSource, b.ints([2 ** 53]), b.ints([0])])];
  }

  private domainSplit(): DomainSplit {
    const split = this.options.perDomain?.split;
    if (!split) throw new Error('internal: a per-domain BatchNorm graph needs the domain split of its rows');
    return split;
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
