/**
 * Each command takes the flags that mean something to it, a concept has one name across commands
 * (an old name still works, with a one-line warning), and --help says what a user needs.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/ort-dann.js', ...args], { encoding: 'utf8' });
const flagsOf = (command: string) => new Set([...cli(command, '--help').stdout.matchAll(/^\s+(--[\w-]+)/gm)].map((m) => m[1]));

test('lr-find and compare do not take the train flags that mean nothing to them', () => {
  const train = flagsOf('train');
  const lrFind = flagsOf('lr-find');
  const compare = flagsOf('compare');
  for (const f of ['--resume', '--run-dir', '--epochs', '--lr', '--monitor', '--patience', '--wandb']) assert.ok(train.has(f), `train lacks ${f}`);
  for (const f of ['--resume', '--run-dir', '--run-name', '--epochs', '--freeze-epochs', '--lr', '--monitor', '--on-nan', '--wandb', '--wandb-project']) assert.ok(!lrFind.has(f), `lr-find offers ${f}`);
  for (const f of ['--source', '--target', '--batch-size', '--lambda-domain', '--seed', '--out-dir']) assert.ok(lrFind.has(f), `lr-find lacks ${f}`);
  for (const f of ['--resume', '--run-dir', '--domain']) assert.ok(!compare.has(f), `compare offers ${f}`);
  for (const f of ['--epochs', '--target-labels', '--out-dir']) assert.ok(compare.has(f), `compare lacks ${f}`);
  // lr-find runs without the flags it no longer takes: it gets as far as the missing artifacts.
  assert.equal(cli('lr-find', '--artifacts', 'no/such/artifacts').stderr, "ort-dann: --artifacts no/such/artifacts: no such folder; check the path, or build artifacts there with `ort-dann build-artifacts --out no/such/artifacts`\n");
  for (const [command, flag] of [['lr-find', '--epochs'], ['lr-find', '--resume'], ['compare', '--resume'], ['compare', '--run-dir']]) {
    const r = cli(command, flag, '1');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, new RegExp(`^ort-dann: Unknown arguments?: ${flag.slice(2)}\\b.*\\(see ort-dann --help\\)\\n$`));
  }
});

test('normalization has one name; export still takes --normalize with a one-line warning', () => {
  assert.ok(flagsOf('train').has('--normalization'));
  assert.ok(flagsOf('export').has('--normalization'));
  assert.ok(!flagsOf('export').has('--normalize'), '--help shows only the current name');
  const r = cli('export', '--normalize', 'imagenet', '--checkpoint', 'no/such/run');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines[0], 'ort-dann: warning: --normalize is deprecated; use --normalization');
  assert.match(lines[1], /^ort-dann: --checkpoint no\/such\/run: /, 'the command then runs with the value');
  assert.equal(lines.length, 2);
});

test('demo-data writes where train looks, and predict --help shows no bogus default', () => {
  assert.match(cli('demo-data', '--help').stdout, /default: data\/demo-<size>px/);
  const predict = cli('predict', '--help').stdout;
  assert.match(predict, /images .*\[array\] \[required\]\n/);
  assert.doesNotMatch(predict, /\[default: \[\]\]/);
});
