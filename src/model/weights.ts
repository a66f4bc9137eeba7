/**
 * Initial weights: seeded init matching torchvision/PyTorch defaults, or a torchvision ResNet state
 * dict (.pth as torch.save writes it, or .safetensors), or the official ImageNet file downloaded once.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createRng } from '../rng.ts';
import { UserError } from '../errors.ts';
import { downloadOnce } from '../io/download.ts';
import { readSafetensors } from '../io/safetensors.ts';
import { type Tensor, toFloat32 } from '../io/tensor.ts';
import { readTorchPth } from '../io/torch-pth.ts';
import { type ModelConfig } from '../onnx/manifest.ts';
import { type ParamEntry } from './net.ts';

export const TORCHVISION_URLS: Record<ModelConfig['backbone'], string> = {
  resnet18: 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
  resnet34: 'https://download.pytorch.org/models/resnet34-b627a593.pth',
  mobilenet_v3_small: 'https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth',
  vgg11_bn: 'https://download.pytorch.org/models/vgg11_bn-6002323d.pth',
};

/** torchvision's init: kaiming_normal_(fan_out, relu) for ResNet convs, BN 1/0; PyTorch's default U(±1/√fan_in) elsewhere. */
export function initParameters(params: ParamEntry[], seed: number): Map<string, Float32Array> {
  const root = createRng(seed).fork('init');
  const out = new Map<string, Float32Array>();
  for (const p of params) {
    const rng = root.fork(p.name);
    const size = p.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    switch (p.init.kind) {
      case 'ones': data.fill(1); break;
      case 'zeros': break;
      case 'kaiming-normal-fan-out': {
        const fanOut = p.shape[0] * p.shape.slice(2).reduce((a, b) => a * b, 1);
        const sd = Math.sqrt(2 / fanOut);
        for (let k = 0; k < size; k++) data[k] = rng.normal(0, sd);
        break;
      }
      case 'uniform-fan-in': {
        const bound = 1 / Math.sqrt(p.init.fanIn);
        for (let k = 0; k < size; k++) data[k] = rng.uniform(-bound, bound);
        break;
      }
    }
    out.set(p.name, data);
  }
  return out;
}

/**
 * torchvision key → the seed's key: the body's children()[:-2] in a Sequential. ResNet: conv1=0, bn1=1,
 * layer1..4=4..7; MobileNetV3 and VGG: features=0.
 */
export function seedKeyFromTorchvision(key: string, backbone: ModelConfig['backbone']): string | undefined {
  if (backbone !== 'resnet18' && backbone !== 'resnet34') return key.startsWith('features.') ? `feature_extractor.resnet_layers.0.${key.slice('features.'.length)}` : undefined;
  const m = /^(conv1|bn1|layer([1-4]))\.(.+)$/.exec(key);
  if (!m) return undefined;
  const index = m[1] === 'conv1' ? 0 : m[1] === 'bn1' ? 1 : 3 + Number(m[2]);
  return `feature_extractor.resnet_layers.${index}.${m[3]}`;
}

function torchvisionKey(seedKey: string, backbone: ModelConfig['backbone']): string {
  const m = /^feature_extractor\.resnet_layers\.(\d+)\.(.+)$/.exec(seedKey)!;
  if (backbone !== 'resnet18' && backbone !== 'resnet34') return `features.${m[2]}`;
  const index = Number(m[1]);
  return `${index === 0 ? 'conv1' : index === 1 ? 'bn1' : `layer${index - 3}`}.${m[2]}`;
}

async function readStateDict(file: string): Promise<Map<string, Tensor>> {
  if (!existsSync(file)) throw new UserError(`--weights ${file}: no such file; give a torchvision .pth/.safetensors file, 'torchvision' or 'none'`);
  if (file.endsWith('.safetensors')) return (await readSafetensors(file)).tensors;
  return readTorchPth(file);
}

export interface LoadedWeights {
  values: Map<string, Float32Array>;
  buffers: Map<string, Float32Array>;
  source: string;
}

/**
 * Overlays a state dict on freshly initialised weights. Keys may be torchvision's (backbone only) or the
 * seed DANN module's own (a full checkpoint); every backbone tensor must be present with its shape.
 */
export async function loadWeights(file: string, backbone: ModelConfig['backbone'], params: ParamEntry[], bufferShapes: Map<string, number[]>, seed: number): Promise<LoadedWeights> {
  const state = await readStateDict(file);
  const values = initParameters(params, seed);
  const buffers = new Map<string, Float32Array>();
  const shapes = new Map([...params.map((p) => [p.name, p.shape] as const), ...bufferShapes]);
  const fullDann = [...state.keys()].some((k) => k.startsWith('feature_extractor.'));
  let used = 0;
  for (const [key, tensor] of state) {
    const name = fullDann ? key : seedKeyFromTorchvision(key, backbone);
    if (!name || name.endsWith('num_batches_tracked')) continue;
    const shape = shapes.get(name);
    if (!shape) {
      if (fullDann) throw new UserError(`--weights ${file}: tensor ${key} is not part of this model; was it saved for another backbone or output count?`);
      continue;
    }
    if (shape.join() !== tensor.shape.join()) throw new UserError(`--weights ${file}: ${key} has shape [${tensor.shape}] but the model needs [${shape}]; use weights for the same backbone`);
    (values.has(name) ? values : buffers).set(name, toFloat32(tensor));
    used++;
  }
  const body = params.filter((p) => p.name.startsWith('feature_extractor.resnet_layers.'));
  const missing = body.filter((p) => !state.has(fullDann ? p.name : torchvisionKey(p.name, backbone)));
  if (missing.length > 0) throw new UserError(`--weights ${file}: ${missing.length} backbone tensors are missing (e.g. ${fullDann ? missing[0].name : torchvisionKey(missing[0].name, backbone)}); is it a ${backbone} state dict?`);
  if (used === 0) throw new UserError(`--weights ${file}: no tensor matches a ${backbone} or DANN state dict`);
  return { values, buffers, source: file };
}

/** The official ImageNet weights, downloaded once into models/weights/ with the hash checked. */
export async function torchvisionWeightsFile(backbone: ModelConfig['backbone'], cacheDir: string): Promise<string> {
  const url = TORCHVISION_URLS[backbone];
  const dest = join(cacheDir, url.slice(url.lastIndexOf('/') + 1));
  const result = await downloadOnce(url, dest, { sha256Prefix: dest.match(/-([0-9a-f]{8})\.pth$/)![1] });
  return result.path;
}
