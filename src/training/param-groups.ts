/**
 * fastai-style parameter groups from PyTorch state_dict keys: which group each parameter belongs to
 * (the splitter), which are norm-layer or bias parameters (no weight decay, since fastai's Learner
 * defaults to wd_bn_bias=False) and which stay trainable when frozen (train_bn=True).
 * Reference: docs/fastai-semantics.md §1 (create_opt) and §3 (freeze_to).
 */
import type { AdamTensor } from './adam.ts';

/** One parameter group: parameters whose name starts with any of `prefixes`. */
export interface GroupRule {
  name: string;
  prefixes: readonly string[];
}

/**
 * The seed's `dann_splitter`. The `grl` group has no parameters but is kept: fastai keeps empty groups,
 * and slice(...) spreads learning rates over all five, so the head groups get the rates the seed got.
 */
export const SEED_DANN_GROUPS: readonly GroupRule[] = [
  { name: 'resnet_layers', prefixes: ['feature_extractor.resnet_layers.'] },
  { name: 'additional_layers', prefixes: ['feature_extractor.additional_layers.'] },
  { name: 'label_predictor', prefixes: ['label_predictor.'] },
  { name: 'domain_classifier', prefixes: ['domain_classifier.'] },
  { name: 'grl', prefixes: ['grl.'] },
];

export interface ParamInfo {
  name: string;
  group: number;
  /** A parameter of a normalisation layer (fastai's norm_types). */
  isBatchNorm: boolean;
  /** A `bias` parameter (of any layer, norm layers included). */
  isBias: boolean;
  /** Whether Adam applies weight decay (fastai do_wd). */
  decay: boolean;
}

export interface ParamGroups {
  groups: { name: string; params: number[] }[];
  /** Trainable parameters in input order. */
  params: ParamInfo[];
  /** Norm-layer running statistics: in the state_dict, but not optimized. */
  buffers: string[];
}

/**
 * Names a norm layer keeps besides its parameters (PyTorch BatchNorm/InstanceNorm with running stats, and the
 * target-domain statistics of per-domain BatchNorm, src/model/net.ts).
 */
const NORM_BUFFERS = ['running_mean', 'running_var', 'num_batches_tracked', 'target_running_mean', 'target_running_var'];

const moduleOf = (key: string) => key.slice(0, key.lastIndexOf('.'));
const leafOf = (key: string) => key.slice(key.lastIndexOf('.') + 1);

export interface AssignOptions {
  /**
   * Whether the module at this path is a norm layer. The default recognises modules that have a
   * `running_mean` entry, which covers BatchNorm; pass a predicate for LayerNorm or stat-less norms.
   */
  isNormModule?: (module: string, keys: ReadonlySet<string>) => boolean;
  /** fastai `wd_bn_bias` (default false: no weight decay on norm and bias parameters). */
  wdBnBias?: boolean;
}

/** Assigns state_dict keys to groups by the first rule with a matching prefix; every parameter must match one. */
export function assignParamGroups(keys: readonly string[], rules: readonly GroupRule[], opts: AssignOptions = {}): ParamGroups {
  const keySet = new Set(keys);
  const isNorm = opts.isNormModule ?? ((m: string, ks: ReadonlySet<string>) => ks.has(`${m}.running_mean`));
  const groups = rules.map((r) => ({ name: r.name, params: [] as number[] }));
  const params: ParamInfo[] = [];
  const buffers: string[] = [];
  const unmatched: string[] = [];
  for (const name of keys) {
    const mod = moduleOf(name);
    const norm = isNorm(mod, keySet);
    if (norm && NORM_BUFFERS.includes(leafOf(name))) {
      buffers.push(name);
      continue;
    }
    const group = rules.findIndex((r) => r.prefixes.some((p) => name.startsWith(p)));
    if (group < 0) {
      unmatched.push(name);
      continue;
    }
    const isBias = leafOf(name) === 'bias';
    groups[group].params.push(params.length);
    params.push({ name, group, isBatchNorm: norm, isBias, decay: (opts.wdBnBias ?? false) || !(norm || isBias) });
  }
  if (unmatched.length > 0) {
    // A parameter outside every group would silently never train, as with a fastai splitter that misses it.
    const shown = unmatched.slice(0, 3).join(', ');
    throw new Error(`${unmatched.length} parameter(s) match no group rule: ${shown}${unmatched.length > 3 ? ', …' : ''}`);
  }
  return { groups, params, buffers };
}

/**
 * fastai `freeze_to(n)`: groups [n:] trainable; in groups [:n] only norm params stay trainable when
 * `trainBn` (their `force_train`). Negative n counts from the end, so `freeze()` is n = −1.
 */
export function trainableMask(params: readonly ParamInfo[], n: number, nGroups: number, trainBn = true): boolean[] {
  const frozenBelow = n >= 0 ? n : nGroups + n;
  return params.map((p) => p.group >= frozenBelow || (trainBn && p.isBatchNorm));
}

/** Lays the parameters out back to back in the given order, as one contiguous buffer holds them. */
export function packTensors(params: readonly ParamInfo[], sizeOf: (name: string) => number): AdamTensor[] {
  let offset = 0;
  return params.map((p) => {
    const size = sizeOf(p.name);
    const t = { name: p.name, offset, size, group: p.group, decay: p.decay };
    offset += size;
    return t;
  });
}
