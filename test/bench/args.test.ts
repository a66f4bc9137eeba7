import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseArgs, parseBatch } from '../../bench/lib/args.ts';
import { UserError } from '../../src/errors.ts';

const SPEC = {
  imageSize: { type: 'repeated', help: 'sizes' },
  threads: { type: 'ints', default: [2], min: 1, help: 'threads' },
  steps: { type: 'int', default: 5, min: 1, help: 'steps' },
  lr: { type: 'number', default: 1e-4, help: 'lr' },
  ep: { type: 'string', default: 'cpu', choices: ['cpu', 'cuda'], help: 'ep' },
  json: { type: 'flag', help: 'json' },
} as const;

test('defaults, kebab-case flags, repeats, lists and the last value winning', () => {
  assert.deepEqual(parseArgs('t', [], SPEC), { imageSize: [], threads: [2], steps: 5, lr: 1e-4, ep: 'cpu', json: false });
  const a = parseArgs('t', ['--image-size', '128', '--image-size', '256', '--threads', '1,2', '--threads', '4', '--steps', '3', '--steps', '7', '--lr', '0.5', '--ep', 'cuda', '--json'], SPEC);
  assert.deepEqual(a, { imageSize: ['128', '256'], threads: [1, 2, 4], steps: 7, lr: 0.5, ep: 'cuda', json: true });
});

test('bad values and unknown flags are one UserError naming the flag', () => {
  const cases: [string[], RegExp][] = [
    [['--bogus'], /^t: unknown option --bogus; it takes:\n {2}--image-size/],
    [['--steps', '0'], /^t: --steps needs an integer ≥ 1, got 0$/],
    [['--steps', '1.5'], /--steps needs an integer/],
    [['--threads', '1,,2'], /--threads needs integers ≥ 1 separated by commas/],
    [['--lr', 'fast'], /--lr needs a number, got fast/],
    [['--ep', 'tpu'], /--ep needs one of cpu, cuda, got tpu/],
    [['--steps'], /--steps needs a value/],
    [['--steps', '--json'], /--steps needs a value/],
  ];
  for (const [argv, message] of cases) {
    assert.throws(() => parseArgs('t', argv, SPEC), (e: unknown) => e instanceof UserError && message.test(e.message), argv.join(' '));
  }
});

test('--batch takes source+target rows, at least one of each', () => {
  assert.deepEqual(parseBatch('16+8'), { nSource: 16, nTarget: 8 });
  for (const bad of ['16', '0+4', '4+0', '4+-1', ' 4+4', '4+4x']) {
    assert.throws(() => parseBatch(bad), (e: Error) => e instanceof UserError && e.message === `--batch ${bad}: write source+target rows, e.g. 16+16`);
  }
});
