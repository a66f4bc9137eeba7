import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWandbJson, toWandbJson } from '../../src/tracking/extended-json.ts';
import { histogram, HistoryBuilder, type Row } from '../../src/tracking/history.ts';
import { configYaml, wrapConfig } from '../../src/tracking/wandb/run-files.ts';
import { outputLogLine } from '../../src/tracking/wandb/console.ts';

test('NaN and ±Infinity are written as W&B (and Python json) write them, and read back', () => {
  const value = { loss: NaN, up: Infinity, down: -Infinity, ok: 1.5, n: [1, NaN], s: 'NaN "quoted"', nested: { x: -0 }, skip: undefined, f32: new Float32Array([0.5]) };
  const text = toWandbJson(value);
  assert.equal(text, '{"loss":NaN,"up":Infinity,"down":-Infinity,"ok":1.5,"n":[1,NaN],"s":"NaN \\"quoted\\"","nested":{"x":0},"f32":[0.5]}');
  const back = parseWandbJson(text) as Record<string, unknown>;
  assert.ok(Number.isNaN(back.loss));
  assert.equal(back.up, Infinity);
  assert.equal(back.down, -Infinity);
  assert.equal(back.s, 'NaN "quoted"');
  assert.deepEqual(parseWandbJson('[ -1e-3 , "a\\u00e9" , true , null , {} ]'), [-0.001, 'aé', true, null, {}]);
  for (const bad of ['{"a":nan}', '[1,]', '{"a" 1}', 'NaNx', '"\n"']) assert.throws(() => parseWandbJson(bad), SyntaxError, bad);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => toWandbJson(cyclic), /circular/);
});

test('histograms: 64 equal bins over the finite range, max in the last bin, NaN/Inf left out, one bin when constant', () => {
  const data = new Float32Array([0, 1, 2, 3, 4, NaN, Infinity, -Infinity, 4]);
  const h = histogram(data, 4)!;
  assert.deepEqual(h, { _type: 'histogram', values: [1, 1, 1, 3], bins: [0, 1, 2, 3, 4] });
  const big = histogram(Float32Array.from({ length: 1000 }, (_, i) => i / 999))!;
  assert.equal(big.values.length, 64);
  assert.equal(big.bins.length, 65);
  assert.equal(big.bins[0], 0);
  assert.equal(big.bins[64], 1);
  assert.equal(big.values.reduce((a, b) => a + b), 1000);
  assert.deepEqual(histogram(new Float32Array([2, 2, NaN])), { _type: 'histogram', values: [2], bins: [2, 2] });
  assert.equal(histogram(new Float32Array([NaN])), undefined);
  assert.equal(histogram(new Float32Array(0)), undefined);
});

test('history rows: same step merges, higher step closes the row, lower step is dropped with a warning', () => {
  const rows: Row[] = [];
  const dropped: [number, number][] = [];
  let now = 10_000;
  const h = new HistoryBuilder((r) => rows.push(r), { now: () => now }, (s, c) => dropped.push([s, c]), 10_000);
  h.log({ a: 1 }, 0);
  h.log({ b: 2 }, 0);
  now = 12_500;
  h.log({ a: 3 }, 5);
  h.log({ a: 99 }, 4);
  h.flush();
  h.flush();
  assert.deepEqual(rows, [
    { a: 1, b: 2, _step: 0, _runtime: 2.5, _timestamp: 12.5 },
    { a: 3, _step: 5, _runtime: 2.5, _timestamp: 12.5 },
  ]);
  assert.deepEqual(dropped, [[4, 5]]);
});

test('config: {key: {value}} for UpsertBucket and config.yaml, with _wandb.t', () => {
  const wrapped = wrapConfig({ lr: 1e-5, model: { arch: 'resnet34', sizes: [1, 2] }, off: undefined });
  assert.deepEqual(Object.keys(wrapped), ['lr', 'model', '_wandb']);
  assert.deepEqual(wrapped.model, { value: { arch: 'resnet34', sizes: [1, 2] } });
  assert.ok((wrapped._wandb.value as { t: Record<string, string> }).t['13']);
  const yaml = configYaml({ lr: 1e-7, 'odd key': 'x: y', nan: NaN, list: [{ a: 1 }, 'b'], empty: {}, yes: true });
  assert.equal(
    yaml.split('\n_wandb:')[0],
    [
      'wandb_version: 1',
      '',
      'lr:',
      '  desc: null',
      '  value: 1.0e-7',
      '"odd key":',
      '  desc: null',
      '  value: "x: y"',
      'nan:',
      '  desc: null',
      '  value: .nan',
      'list:',
      '  desc: null',
      '  value:',
      '    -',
      '      a: 1',
      '    - "b"',
      'empty:',
      '  desc: null',
      '  value: {}',
      '"yes":',
      '  desc: null',
      '  value: true',
    ].join('\n'),
  );
});

test('output.log lines: UTC with microseconds and no Z, ERROR prefix for stderr', () => {
  const t = Date.UTC(2024, 7, 22, 3, 33, 20, 123);
  assert.equal(outputLogLine('epoch 1 done', false, t), '2024-08-22T03:33:20.123000 epoch 1 done');
  assert.equal(outputLogLine('bad', true, t), 'ERROR 2024-08-22T03:33:20.123000 bad');
});
