/**
 * torchvision's MobileNetV3-small `features` (width 1.0) as ONNX, with torchvision's module names under
 * a prefix: Conv2dNormActivation blocks (conv, BatchNorm eps 1e-3 momentum 0.01, Hardswish or ReLU),
 * inverted residuals with depthwise convs and squeeze-excitation (fc1, ReLU, fc2, Hardsigmoid).
 * Output: 576 channels at stride 32.
 */
import { type Net } from './net.ts';

/** torchvision's bneck_conf rows for mobilenet_v3_small: input, kernel, expanded, output, SE, activation, stride. */
const SMALL: [number, number, number, number, boolean, 'RE' | 'HS', number][] = [
  [16, 3, 16, 16, true, 'RE', 2], [16, 3, 72, 24, false, 'RE', 2], [24, 3, 88, 24, false, 'RE', 1],
  [24, 5, 96, 40, true, 'HS', 2], [40, 5, 240, 40, true, 'HS', 1], [40, 5, 240, 40, true, 'HS', 1],
  [40, 5, 120, 48, true, 'HS', 1], [48, 5, 144, 48, true, 'HS', 1], [48, 5, 288, 96, true, 'HS', 2],
  [96, 5, 576, 96, true, 'HS', 1], [96, 5, 576, 96, true, 'HS', 1],
];
export const MOBILENET_V3_SMALL_CHANNELS = 576;

/** torchvision's _make_divisible(v, 8): the nearest multiple of 8, never more than 10 % below v. */
function divisible8(v: number): number {
  const n = Math.max(8, Math.floor(v + 4) - (Math.floor(v + 4) % 8));
  return n < 0.9 * v ? n + 8 : n;
}

const BN = { eps: 1e-3, momentum: 0.01 };

function convNormAct(net: Net, name: string, x: string, cin: number, cout: number, k: number, stride: number, act: 'RE' | 'HS' | undefined, groups = 1): string {
  const y = net.batchNorm(`${name}.1`, net.conv(`${name}.0`, x, cin, cout, k, stride, (k - 1) / 2, false, { groups }), cout, BN);
  if (act === 'RE') return net.relu(y);
  return act === 'HS' ? net.b.op('HardSwish', [y]) : y;
}

function squeezeExcitation(net: Net, name: string, x: string, c: number): string {
  const squeezed = divisible8(Math.floor(c / 4));
  let s = net.b.op('GlobalAveragePool', [x]);
  s = net.relu(net.conv(`${name}.fc1`, s, c, squeezed, 1, 1, 0, true, { torchvisionInit: true }));
  s = net.conv(`${name}.fc2`, s, squeezed, c, 1, 1, 0, true, { torchvisionInit: true });
  return net.b.op('Mul', [x, net.b.op('HardSigmoid', [s], { alpha: 1 / 6, beta: 0.5 })]);
}

export function mobilenetV3Small(net: Net, prefix: string, images: string): string {
  let x = convNormAct(net, `${prefix}.0`, images, 3, 16, 3, 2, 'HS');
  SMALL.forEach(([cin, k, exp, cout, se, act, stride], i) => {
    const name = `${prefix}.${i + 1}.block`;
    let y = x;
    let layer = 0;
    if (exp !== cin) y = convNormAct(net, `${name}.${layer++}`, y, cin, exp, 1, 1, act);
    y = convNormAct(net, `${name}.${layer++}`, y, exp, exp, k, stride, act, exp);
    if (se) y = squeezeExcitation(net, `${name}.${layer++}`, y, exp);
    y = convNormAct(net, `${name}.${layer++}`, y, exp, cout, 1, 1, undefined);
    x = stride === 1 && cin === cout ? net.b.op('Add', [y, x]) : y;
  });
  return convNormAct(net, `${prefix}.12`, x, 96, MOBILENET_V3_SMALL_CHANNELS, 1, 1, 'HS');
}
