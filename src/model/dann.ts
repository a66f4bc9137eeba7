/**
 * The seed's DANN as ONNX: a torchvision body (ResNet18/34, MobileNetV3-small, VGG11-BN) without its pooling and
 * classifier, the extra AvgPool2d(2) → Conv2d(C,C,4,2,1) → BN → ReLU block, a label head on the source rows and a domain
 * head behind the gradient reversal marker, with the seed's losses (MSE or cross-entropy, plus
 * lambda_domain × BCE-with-logits over all rows). Value names are the PyTorch state_dict keys.
 */
import { MARKER_DOMAIN } from '../autodiff/rules.ts';
import { Builder } from '../onnx/builder.ts';
import { Graph } from '../onnx/graph.ts';
import { type Domain, type ModelConfig } from '../onnx/manifest.ts';
import { DataType } from '../onnx/proto.ts';
import { MOBILENET_V3_SMALL_CHANNELS, mobilenetV3Small } from './mobilenet.ts';
import { type DomainSplit, type Mode, Net } from './net.ts';
import { VGG11_CHANNELS, vgg11bn } from './vgg.ts';

const STAGES: Record<string, number[]> = { resnet18: [2, 2, 2, 2], resnet34: [3, 4, 6, 3] };
const WIDTHS = [64, 128, 256, 512];
export const HIDDEN = { label: [256, 64], domain: 256 };

function basicBlock(net: Net, name: string, x: string, cin: number, cout: number, stride: number): string {
  let y = net.relu(net.batchNorm(`${name}.bn1`, net.conv(`${name}.conv1`, x, cin, cout, 3, stride, 1, false), cout));
  y = net.batchNorm(`${name}.bn2`, net.conv(`${name}.conv2`, y, cout, cout, 3, 1, 1, false), cout);
  const shortcut = stride !== 1 || cin !== cout
    ? net.batchNorm(`${name}.downsample.1`, net.conv(`${name}.downsample.0`, x, cin, cout, 1, stride, 0, false), cout)
    : x;
  return net.relu(net.b.op('Add', [y, shortcut]));
}

/** Channels of each backbone's last feature map (stride 32). */
export const BACKBONE_CHANNELS: Record<ModelConfig['backbone'], number> = { resnet18: 512, resnet34: 512, mobilenet_v3_small: MOBILENET_V3_SMALL_CHANNELS, vgg11_bn: VGG11_CHANNELS };

function resnet(net: Net, config: ModelConfig, p: string, images: string): string {
  let x = net.relu(net.batchNorm(`${p}.1`, net.conv(`${p}.0`, images, 3, 64, 7, 2, 3, false), 64));
  x = net.b.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  let cin = 64;
  STAGES[config.backbone].forEach((blocks, stage) => {
    const cout = WIDTHS[stage];
    for (let k = 0; k < blocks; k++) {
      x = basicBlock(net, `${p}.${4 + stage}.${k}`, x, cin, cout, k === 0 && stage > 0 ? 2 : 1);
      cin = cout;
    }
  });
  return x;
}

/**
 * The seed's FeatureExtractor on any backbone: the torchvision body without its pooling and classifier
 * (`resnet_layers`, the seed's name: children()[:-2]), then AvgPool2d(2) → Conv2d(C, C, 4, 2, 1) → BN → ReLU
 * with C the body's output channels.
 */
function featureExtractor(net: Net, config: ModelConfig, images: string): string {
  const p = 'feature_extractor.resnet_layers';
  // For MobileNetV3 and VGG, children()[:-2] is `features` alone, hence the extra .0.
  let x = config.backbone === 'mobilenet_v3_small' ? mobilenetV3Small(net, `${p}.0`, images)
    : config.backbone === 'vgg11_bn' ? vgg11bn(net, `${p}.0`, images) : resnet(net, config, p, images);
  const c = BACKBONE_CHANNELS[config.backbone];
  const a = 'feature_extractor.additional_layers';
  x = net.b.op('AveragePool', [x], { kernel_shape: [2, 2], strides: [2, 2] });
  x = net.conv(`${a}.1`, x, c, c, 4, 2, 1, true);
  return net.relu(net.batchNorm(`${a}.2`, x, c));
}

export interface DannGraph {
  graph: Graph;
  net: Net;
  /** Dropout keep-mask inputs (train mode only). */
  masks: { name: string; p: number; rows: 'source' | 'all'; width: number }[];
}

/**
 * Builds the forward graph with losses. Train mode: labels head on source rows only (the target rows
 * would be discarded), explicit dropout masks, GRL marker. Eval mode: predictions for every row.
 */
export function buildDann(config: ModelConfig, mode: Mode, opts: { deploy?: Domain } = {}): DannGraph {
  const g = new Graph();
  g.name = `${config.name}-${mode}`;
  const S = config.imageSize;
  const K = config.outputs.length;
  const classification = config.task === 'classification';
  g.inputs.push(
    { name: 'images', dtype: 'float', shape: ['N', 3, S, S] },
    { name: 'n_source', dtype: 'int64', shape: [1] },
    { name: 'labels', dtype: 'float', shape: classification ? ['NS'] : ['NS', K] },
    { name: 'lambda_domain', dtype: 'float', shape: [] },
  );
  if (mode === 'train') g.inputs.push({ name: 'alpha', dtype: 'float', shape: [] });
  const masks: DannGraph['masks'] = [];
  const maskInput = (name: string, rows: 'source' | 'all', width: number) => {
    if (mode !== 'train' || config.dropout === 0) return undefined;
    g.inputs.push({ name, dtype: 'float', shape: [rows === 'source' ? 'NS' : 'N', width] });
    masks.push({ name, p: config.dropout, rows, width });
    return name;
  };
  const labelMask = maskInput('label_dropout_mask', 'source', HIDDEN.label[0]);
  const domainMask = maskInput('domain_dropout_mask', 'all', HIDDEN.domain);

  const rows = new Builder(g, 'rows');
  const n = rows.op('Gather', [rows.op('Shape', ['images']), rows.constant('int64', [0], [])], { axis: 0 });
  const split = (): DomainSplit => (mode === 'train'
    ? { nSource: 'n_source', hasTarget: rows.op('Less', [rows.op('Squeeze', ['n_source', rows.ints([0])]), n]) }
    : { nSource: 'n_source' });
  const perDomain = config.batchNormStats !== 'per-domain' ? undefined : opts.deploy ? { deploy: opts.deploy } : { split: split() };
  const net = new Net(g, mode, { perDomain });
  const { b } = net;
  const features = featureExtractor(net, config, 'images');
  const F = config.featureDim;
  const sourceRows = (x: string) => b.op('Slice', [x, b.ints([0]), 'n_source', b.ints([0])]);

  const labelHead = (x: string) => {
    const p = 'label_predictor.regressor';
    let h = net.dropout(net.relu(net.linear(`${p}.1`, b.op('Flatten', [x], { axis: 1 }), F, HIDDEN.label[0])), labelMask, config.dropout);
    h = net.relu(net.linear(`${p}.4`, h, HIDDEN.label[0], HIDDEN.label[1]));
    return net.linear(`${p}.6`, h, HIDDEN.label[1], K);
  };
  // Train: the head only sees source rows, so no work is spent on target rows whose outputs are dropped.
  const sourcePred = mode === 'train' ? labelHead(sourceRows(features)) : sourceRows(b.op('Identity', [labelHead(features)], {}, 'prediction'));
  const regressionLoss = classification
    ? b.op('SoftmaxCrossEntropyLoss', [sourcePred, b.op('Cast', ['labels'], { to: DataType.int64 })], { reduction: 'mean' }, 'regression_loss')
    : b.op('ReduceMean', [b.op('Pow', [b.op('Sub', [sourcePred, 'labels']), b.scalar(2)])], { keepdims: 0 }, 'regression_loss');

  const reversed = mode === 'train' ? b.opN('GradientReversal', [features, 'alpha'], {}, 1, MARKER_DOMAIN)[0] : features;
  if (mode === 'train') g.extraOpsets.set(MARKER_DOMAIN, 1);
  const d = 'domain_classifier.classifier';
  const h = net.dropout(net.relu(net.linear(`${d}.1`, b.op('Flatten', [reversed], { axis: 1 }), F, HIDDEN.domain)), domainMask, config.dropout);
  const domainLogit = net.linear(`${d}.4`, h, HIDDEN.domain, 1);
  if (mode === 'eval') b.op('Identity', [domainLogit], {}, 'domain_logit');
  // Domain labels from row order: 0 for the first n_source rows (source), 1 for the rest (target).
  const rowIndex = b.op('Range', [b.constant('int64', [0], []), n, b.constant('int64', [1], [])]);
  const domainLabels = b.op('Cast', [b.op('Not', [b.op('Less', [rowIndex, 'n_source'])])], { to: DataType.float });
  const z = b.op('Squeeze', [domainLogit, b.ints([1])]);
  // BCE with logits = softplus(z) − y·z: stable for large |z| (ORT's Softplus does not overflow).
  const domainLoss = b.op('ReduceMean', [b.op('Sub', [b.op('Softplus', [z]), b.op('Mul', [domainLabels, z])])], { keepdims: 0 }, 'domain_loss');
  b.op('Add', [regressionLoss, b.op('Mul', ['lambda_domain', domainLoss])], {}, 'loss');
  return { graph: g, net, masks };
}
