import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SEED_DANN_GROUPS, assignParamGroups, packTensors, trainableMask } from '../../src/training/param-groups.ts';

const bn = (m: string) => ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((k) => `${m}.${k}`);

/** The state_dict keys of the seed's DANN module (torchvision resnet34 body, 3 heads), in PyTorch order. */
function seedDannKeys(): string[] {
  const body = 'feature_extractor.resnet_layers';
  const keys = [`${body}.0.weight`, ...bn(`${body}.1`)];
  [3, 4, 6, 3].forEach((blocks, l) => {
    for (let b = 0; b < blocks; b++) {
      const m = `${body}.${l + 4}.${b}`;
      keys.push(`${m}.conv1.weight`, ...bn(`${m}.bn1`), `${m}.conv2.weight`, ...bn(`${m}.bn2`));
      if (b === 0 && l > 0) keys.push(`${m}.downsample.0.weight`, ...bn(`${m}.downsample.1`));
    }
  });
  keys.push('feature_extractor.additional_layers.1.weight', 'feature_extractor.additional_layers.1.bias');
  keys.push(...bn('feature_extractor.additional_layers.2'));
  for (const i of [1, 4, 6]) keys.push(`label_predictor.regressor.${i}.weight`, `label_predictor.regressor.${i}.bias`);
  for (const i of [1, 4]) keys.push(`domain_classifier.classifier.${i}.weight`, `domain_classifier.classifier.${i}.bias`);
  return keys;
}

test("the seed's dann_splitter groups, BatchNorm and bias flags on the real key list", () => {
  const keys = seedDannKeys();
  const { groups, params, buffers } = assignParamGroups(keys, SEED_DANN_GROUPS);
  assert.equal(params.length, 122);
  assert.deepEqual(
    groups.map((g) => [g.name, g.params.length]),
    [['resnet_layers', 108], ['additional_layers', 4], ['label_predictor', 6], ['domain_classifier', 4], ['grl', 0]],
  );
  assert.equal(buffers.length, 37 * 3);
  assert.ok(buffers.every((b) => /\.(running_mean|running_var|num_batches_tracked)$/.test(b)));
  assert.equal(params.filter((p) => p.isBatchNorm).length, 37 * 2);

  const info = (name: string) => params.find((p) => p.name === name)!;
  assert.deepEqual(info('feature_extractor.resnet_layers.0.weight'), {
    name: 'feature_extractor.resnet_layers.0.weight', group: 0, isBatchNorm: false, isBias: false, decay: true,
  });
  const bnWeight = info('feature_extractor.resnet_layers.5.0.downsample.1.weight');
  assert.deepEqual([bnWeight.group, bnWeight.isBatchNorm, bnWeight.isBias, bnWeight.decay], [0, true, false, false]);
  const bnBias = info('feature_extractor.additional_layers.2.bias');
  assert.deepEqual([bnBias.group, bnBias.isBatchNorm, bnBias.isBias, bnBias.decay], [1, true, true, false]);
  const convBias = info('feature_extractor.additional_layers.1.bias');
  assert.deepEqual([convBias.isBatchNorm, convBias.isBias, convBias.decay], [false, true, false]);
  const head = info('label_predictor.regressor.6.weight');
  assert.deepEqual([head.group, head.decay], [2, true]);
  assert.equal(info('domain_classifier.classifier.4.bias').group, 3);
  // Weight decay applies to conv and linear weights only: 36 convs + 1 conv + 5 linears.
  assert.equal(params.filter((p) => p.decay).length, 36 + 1 + 5);

  assert.equal(assignParamGroups(keys, SEED_DANN_GROUPS, { wdBnBias: true }).params.filter((p) => p.decay).length, 122);
});

test('freeze keeps BatchNorm params trainable in frozen groups (train_bn)', () => {
  const { params } = assignParamGroups(seedDannKeys(), SEED_DANN_GROUPS);
  const count = (mask: boolean[], pred: (i: number) => boolean) => mask.filter((m, i) => m && pred(i)).length;

  // The seed's freeze_to(1): the resnet body is frozen except its 72 BN params; the rest trains.
  const seed = trainableMask(params, 1, 5);
  assert.equal(count(seed, (i) => params[i].group === 0), 72);
  assert.ok(params.every((p, i) => p.group === 0 || seed[i]));
  assert.ok(params.every((p, i) => !(p.group === 0 && !p.isBatchNorm) || !seed[i]));

  // fastai's freeze() = freeze_to(-1): only the last group (empty here) plus every BN param.
  const freeze = trainableMask(params, -1, 5);
  assert.equal(freeze.filter(Boolean).length, 74);
  assert.ok(params.every((p, i) => freeze[i] === p.isBatchNorm));

  assert.ok(trainableMask(params, 0, 5).every(Boolean));
  const noTrainBn = trainableMask(params, 1, 5, false);
  assert.equal(noTrainBn.filter(Boolean).length, 14);
});

test('group rules are ordered prefixes; unmatched parameters are an error', () => {
  const keys = ['a.0.weight', 'a.1.weight', 'a.1.bias', 'a.1.running_mean', 'a.1.running_var', 'b.weight', 'b.bias'];
  const rules = [
    { name: 'stem', prefixes: ['a.0.'] },
    { name: 'rest', prefixes: ['a.', 'b.'] },
  ];
  const { groups, params, buffers } = assignParamGroups(keys, rules);
  assert.deepEqual(groups, [{ name: 'stem', params: [0] }, { name: 'rest', params: [1, 2, 3, 4] }]);
  assert.deepEqual(buffers, ['a.1.running_mean', 'a.1.running_var']);
  assert.deepEqual(params.map((p) => [p.isBatchNorm, p.decay]), [[false, true], [true, false], [true, false], [false, true], [false, false]]);

  // A custom norm test, e.g. for LayerNorm, which keeps no running statistics.
  const ln = assignParamGroups(['ln.weight', 'ln.bias', 'fc.weight'], [{ name: 'all', prefixes: [''] }], {
    isNormModule: (m) => m === 'ln',
  });
  assert.deepEqual(ln.params.map((p) => p.isBatchNorm), [true, true, false]);

  assert.throws(() => assignParamGroups([...keys, 'c.weight'], rules), /1 parameter\(s\) match no group rule: c.weight/);
});

test('packTensors lays parameters out contiguously with their group and decay flag', () => {
  const { params } = assignParamGroups(['a.weight', 'a.bias', 'b.weight'], [{ name: 'a', prefixes: ['a.'] }, { name: 'b', prefixes: ['b.'] }]);
  const sizes: Record<string, number> = { 'a.weight': 12, 'a.bias': 3, 'b.weight': 7 };
  assert.deepEqual(packTensors(params, (n) => sizes[n]), [
    { name: 'a.weight', offset: 0, size: 12, group: 0, decay: true },
    { name: 'a.bias', offset: 12, size: 3, group: 0, decay: false },
    { name: 'b.weight', offset: 15, size: 7, group: 1, decay: true },
  ]);
});
