/**
 * Nominal FLOPs of the DANN model from its config: 2 × multiply-accumulates of every conv and linear
 * layer over all kernel taps (the fvcore/ptflops convention; taps on zero padding count too).
 * BatchNorm, ReLU, pooling and the losses are not counted.
 *
 * Train step = forward + dX + dW of every layer, each costing as much as the forward, except the
 * stem conv's dX, which nothing needs (the images get no gradient). The label head runs on the
 * source rows only; the domain head and the body on every row.
 */
import { type ModelConfig } from '../../src/onnx/manifest.ts';
import { HIDDEN } from '../../src/model/dann.ts';

const STAGES: Partial<Record<ModelConfig['backbone'], number[]>> = { resnet18: [2, 2, 2, 2], resnet34: [3, 4, 6, 3] };
const WIDTHS = [64, 128, 256, 512];

const out = (h: number, k: number, s: number, p: number) => Math.floor((h + 2 * p - k) / s) + 1;

/** MACs per image of the body (ResNet + extra block), split into the stem conv and the rest. */
function bodyMacs(config: ModelConfig): { stem: number; rest: number } {
  let h = out(config.imageSize, 7, 2, 3);
  const stem = 3 * 64 * 49 * h * h;
  let rest = 0;
  const conv = (cin: number, cout: number, k: number, s: number, p: number) => {
    h = out(h, k, s, p);
    rest += cin * cout * k * k * h * h;
  };
  h = out(h, 3, 2, 1); // max-pool
  let cin = 64;
  const stages = STAGES[config.backbone];
  if (!stages) throw new Error(`FLOPs are counted for ResNet bodies only, not ${config.backbone}`);
  stages.forEach((blocks, stage) => {
    const cout = WIDTHS[stage];
    for (let b = 0; b < blocks; b++) {
      const stride = b === 0 && stage > 0 ? 2 : 1;
      const hIn = h;
      if (stride !== 1 || cin !== cout) rest += cin * cout * out(hIn, 1, stride, 0) ** 2; // downsample 1×1
      conv(cin, cout, 3, stride, 1);
      conv(cout, cout, 3, 1, 1);
      cin = cout;
    }
  });
  h = Math.floor(h / 2); // AvgPool2d(2)
  conv(512, 512, 4, 2, 1);
  return { stem, rest };
}

/** MACs per row of the label head and of the domain head. */
function headMacs(config: ModelConfig): { label: number; domain: number } {
  const [h1, h2] = HIDDEN.label;
  return {
    label: config.featureDim * h1 + h1 * h2 + h2 * config.outputs.length,
    domain: config.featureDim * HIDDEN.domain + HIDDEN.domain,
  };
}

/** Forward GFLOP per image with both heads on every image (the eval forward). */
export function forwardGflopPerImage(config: ModelConfig): number {
  const { stem, rest } = bodyMacs(config);
  const { label, domain } = headMacs(config);
  return (2 * (stem + rest + label + domain)) / 1e9;
}

/** Train-step GFLOP per image for a batch of `count` rows, the first `nSource` of them labelled. */
export function trainGflopPerImage(config: ModelConfig, count: number, nSource: number): number {
  const { stem, rest } = bodyMacs(config);
  const { label, domain } = headMacs(config);
  const macs = count * (2 * stem + 3 * (rest + domain)) + nSource * 3 * label;
  return (2 * macs) / 1e9 / count;
}
