/**
 * torchvision's vgg11_bn `features` as ONNX, with torchvision's module names under a prefix: 3×3 convs
 * (with bias) → BatchNorm → ReLU, and 2×2 max-pools. Output: 512 channels at stride 32.
 */
import { type Net } from './net.ts';

/** torchvision's configuration "A" (VGG11): channel counts, 'M' for a max-pool. */
const VGG11: (number | 'M')[] = [64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'];
export const VGG11_CHANNELS = 512;

export function vgg11bn(net: Net, prefix: string, images: string): string {
  let [x, cin, index] = [images, 3, 0];
  for (const v of VGG11) {
    if (v === 'M') {
      x = net.b.op('MaxPool', [x], { kernel_shape: [2, 2], strides: [2, 2] });
      index += 1;
      continue;
    }
    x = net.relu(net.batchNorm(`${prefix}.${index + 1}`, net.conv(`${prefix}.${index}`, x, cin, v, 3, 1, 1, true, { torchvisionInit: true }), v));
    [cin, index] = [v, index + 3];
  }
  return x;
}
