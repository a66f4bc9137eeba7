/**
 * Deep embedded validation (DEV; You et al., ICML 2019): an estimate of the target-domain risk that
 * needs no target labels. Each source validation loss l_i is importance-weighted by the density ratio
 * w_i = p_target(x_i) / p_source(x_i), which a domain classifier on the features gives as
 * w = P(target|x) / P(source|x) · n_source / n_target = exp(logit) · n_source / n_target. The plain
 * weighted mean has high variance, so DEV adds the control variate w (whose true mean is 1):
 *
 *   DEV = mean(w·l) + η·mean(w) − η,   η = −Cov(w·l, w) / Var(w).
 *
 * The domain classifier here is the DANN model's own domain head, evaluated on the validation
 * features: it is trained to separate the domains on exactly those features (the gradient reversal
 * acts on the feature extractor only), so a source-only run, whose head never trains, has no DEV.
 */

import type { Direction, Metric } from '../metrics.ts';

/** Logits are clipped before exp so one confident row cannot overflow the weights. */
const MAX_LOGIT = 30;

/**
 * `losses[i]` and `sourceLogits[i]`: the loss and the domain logit (target = positive) of source
 * validation row i; `sourceCount / targetCount` the two domains' validation sizes.
 */
export function deepEmbeddedValidation(losses: ArrayLike<number>, sourceLogits: ArrayLike<number>, sourceCount: number, targetCount: number): number {
  const n = losses.length;
  if (n === 0 || sourceLogits.length !== n || !(targetCount > 0)) return NaN;
  const ratio = sourceCount / targetCount;
  const w = new Float64Array(n);
  const wl = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    w[i] = Math.exp(Math.max(-MAX_LOGIT, Math.min(MAX_LOGIT, sourceLogits[i]))) * ratio;
    wl[i] = w[i] * losses[i];
  }
  const mean = (a: Float64Array) => a.reduce((s, x) => s + x, 0) / n;
  const mw = mean(w);
  const mwl = mean(wl);
  if (n < 2) return mwl;
  let cov = 0;
  let varW = 0;
  for (let i = 0; i < n; i++) {
    cov += (wl[i] - mwl) * (w[i] - mw);
    varW += (w[i] - mw) ** 2;
  }
  // Equal weights (a classifier that cannot tell the domains apart): no control variate is needed.
  if (!(varW > 0)) return mwl;
  const eta = -cov / varW;
  return mwl + eta * mw - eta;
}

/** DEV as a Metric over source validation rows: per-row loss (standardized units) and domain logit. */
export class DeepEmbeddedValidation implements Metric<{ losses: ArrayLike<number>; logits: ArrayLike<number>; targets: number }> {
  readonly name = 'dev';
  readonly direction: Direction = 'min';
  private losses: number[] = [];
  private logits: number[] = [];
  private targets = 0;

  reset(): void {
    this.losses = [];
    this.logits = [];
    this.targets = 0;
  }

  accumulate(b: { losses: ArrayLike<number>; logits: ArrayLike<number>; targets: number }): void {
    for (let i = 0; i < b.losses.length; i++) {
      this.losses.push(b.losses[i]);
      this.logits.push(b.logits[i]);
    }
    this.targets += b.targets;
  }

  value(): number {
    return deepEmbeddedValidation(this.losses, this.logits, this.losses.length, this.targets);
  }
}
