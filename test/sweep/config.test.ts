/**
 * Sweep config checks without a server: the README's sweep for the seed recipe is valid, the CLI's
 * distribution fill, the agent's command building, and the run side's parameter file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { UserError } from '../../src/errors.ts';
import { trainFlags } from '../../src/cli/train.ts';
import { checkSweepConfig } from '../../src/sweep/config.ts';
import { expandCommand, macroValues } from '../../src/sweep/command.ts';
import { applySweepEnvironment } from '../../src/sweep/run-env.ts';
import { parseYaml } from '../../src/sweep/yaml.ts';

test("the README's sweep for the seed recipe passes ort-dann sweep's checks", () => {
  const readme = readFileSync('README.md', 'utf8');
  const yaml = /## Hyper-parameter sweeps[\s\S]*?```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(yaml, 'no sweep YAML in the README');
  const sweep = checkSweepConfig(yaml, 'README.md');
  assert.equal(sweep.method, 'bayes');
  assert.deepEqual(sweep.metric, { name: 'target_rmse_num_particles', goal: 'minimize' });
  assert.deepEqual(parseYaml(sweep.yaml), parseYaml(yaml), 'what is sent is the YAML itself (nothing to fill there)');
});

test('the distribution is filled as the wandb CLI fills it', () => {
  const sweep = checkSweepConfig('method: random\nparameters:\n  lr-mult: {min: 10, max: 100}\n  lambda-domain: {min: 0.0, max: 1.0}\n', 's.yaml');
  const params = (parseYaml(sweep.yaml) as { parameters: Record<string, { distribution: string }> }).parameters;
  assert.equal(params['lr-mult'].distribution, 'int_uniform');
  assert.equal(params['lambda-domain'].distribution, 'uniform');
  // 1.0 stays a float on the way out, so the server fills nothing differently.
  assert.match(sweep.yaml, /max: 1\.0\n/);
  assert.throws(() => checkSweepConfig('method: grid\nparameters:\n  lr: {min: 1.0e-3, max: 1.0e-2}\n', 's.yaml'), /s\.yaml: parameters\.lr: grid search takes values, value, int_uniform or q_uniform parameters, not uniform/);
  assert.throws(() => checkSweepConfig('method: random\nparameters:\n  batch-size: {min: 8.0, max: 32.0}\n', 's.yaml'), /parameters\.batch-size \(.*\): --batch-size .*: must be an integer from 1 to 4096/);
  assert.throws(() => checkSweepConfig('method: grid\nparameters:\n  lr: {values: [1]}\ncommand: [npx, ort-dann, train, ${args}]\n', 's.yaml'), /s\.yaml: line 4: "\$\{args\}" inside \[ \]/);
  assert.throws(() => checkSweepConfig('method: grid\nparameters:\n  lr: {values: [1]}\ncommand:\n- train\n- --epochs\n- "0"\n', 's.yaml'), /s\.yaml: command: --epochs 0: must be an integer from 1 to 100000/);
});

test('the child command is built as the wandb agent builds it', () => {
  const args = { lr: { value: 1e-5 }, domain: { value: false }, 'lambda-domain': { value: 0.3 }, ep: { value: 'cpu' } };
  const macros = macroValues(args, 'train.py', '/w/config-r.json');
  const env = { HOME: '/home/u' };
  assert.deepEqual(expandCommand(['${env}', '${interpreter}', '${program}', '${args}'], macros, env),
    ['/usr/bin/env', 'python', 'train.py', '--lr=1e-05', '--domain=False', '--lambda-domain=0.3', '--ep=cpu']);
  assert.deepEqual(expandCommand(['npx', 'ort-dann', 'train', '--x=${envvar:HOME}/${envvar:NOPE}', '${args_no_boolean_flags}', '${args_json}', '${unknown}'], macros, env),
    ['npx', 'ort-dann', 'train', '--x=/home/u/NOPE', '--lr=1e-05', '--lambda-domain=0.3', '--ep=cpu', '{"lr": 1e-05, "domain": false, "lambda-domain": 0.3, "ep": "cpu"}']);
  assert.deepEqual(macros.args_no_equals.slice(0, 4), ['--lr', '1e-05', '--domain', 'False']);
});

test('train takes the parameter file over its command line, and refuses what train would refuse', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ort-dann-runenv-'));
  try {
    const path = join(dir, 'config-r1.yaml');
    writeFileSync(path, "wandb_version: 1\n\nlr:\n  value: '1e-3'\ndomain:\n  value: false\nbatch-size:\n  value: 16\n");
    const args: Record<string, unknown> = { lr: '5e-3', domain: true, 'batch-size': 8, 'wandb-project': 'mine' };
    const env = { WANDB_SWEEP_ID: 'sw1', WANDB_RUN_ID: 'r1', WANDB_SWEEP_PARAM_PATH: path, WANDB_PROJECT: 'theirs' };
    const sweep = applySweepEnvironment(args, trainFlags, env);
    assert.deepEqual(sweep, { sweepId: 'sw1', params: { lr: '1e-3', domain: false, 'batch-size': 16 } });
    assert.deepEqual([args.lr, args.domain, args['batch-size'], args.batchSize, args['wandb-project'], args['wandb-run-id'], args['run-name']], ['1e-3', false, 16, 16, 'theirs', 'r1', 'r1']);
    assert.equal(applySweepEnvironment({}, trainFlags, {}), undefined, 'no sweep, no change');
    writeFileSync(path, 'wandb_version: 1\n\nbatch_size:\n  value: 16\n');
    assert.throws(() => applySweepEnvironment({}, trainFlags, env), (e: unknown) => e instanceof UserError && /parameter "batch_size" is not an ort-dann train flag/.test(e.message));
    writeFileSync(path, 'wandb_version: 1\n\ndomain:\n  value: maybe\n');
    assert.throws(() => applySweepEnvironment({}, trainFlags, env), /domain is maybe, but --domain is a switch/);
    assert.throws(() => applySweepEnvironment({ wandb: 'disabled' }, trainFlags, { WANDB_SWEEP_ID: 'sw1' }), /--wandb disabled: this run belongs to sweep sw1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
