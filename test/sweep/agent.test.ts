/**
 * `ort-dann sweep` and `ort-dann agent` end to end, as a user runs them (subprocesses), against the fake
 * sweep controller in front of the fake W&B: the sweep is created from the YAML, every grid point is
 * trained as a run of the sweep (parameters in its config, the metric once per epoch in its history,
 * exit 0), `exit` ends the agent, `stop` ends a run gracefully, a crashing run does not end the agent,
 * failures are counted as wandb's agent counts them, 400/404 answers end the agent as wandb's does, and
 * the API key is written nowhere.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { generateDemoData } from '../../src/data/index.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { dumpYaml } from '../../src/sweep/yaml.ts';
import { FakeSweepController, TEST_KEY } from './fake-controller.ts';

const BIN = resolve('bin/ort-dann.js');
const root = mkdtempSync(join(tmpdir(), 'ort-dann-sweep-'));
const artifacts = join(root, 'artifacts');
let data: Awaited<ReturnType<typeof generateDemoData>>;
let fake: FakeSweepController;

before(async () => {
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 3 });
  data = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 8, val: 4, sourceVal: 8, seed: 1 });
  fake = await FakeSweepController.start();
});
after(async () => {
  await fake?.close();
  rmSync(root, { recursive: true, force: true });
});

/** The sweep command: this node and ort-dann, a tiny training budget (as the train CLI tests), then the parameters. */
function sweepYaml(parameters: string, extra: { epochs?: number; method?: string; metric?: string } = {}): string {
  const fixed = [process.execPath, BIN, 'train', '--artifacts', artifacts, '--source', data.sourceVal!, '--source-val', data.sourceVal!, '--target', data.targetTrain,
    '--target-val', data.targetVal, '--target-labels', data.targetValLabels, '--batch-size', '2', '--source-size', '8', '--val-size', '4', '--threads', '1',
    '--epochs', String(extra.epochs ?? 1), '--freeze-epochs', '1', '--wandb-histograms-every', '0'];
  return [
    'program: ort-dann',
    `method: ${extra.method ?? 'grid'}`,
    'metric:',
    `  name: ${extra.metric ?? 'target_rmse_num_particles'}`,
    '  goal: minimize',
    'parameters:',
    parameters,
    'command:',
    ...fixed.map((c) => `- '${c}'`),
    '- ${args}',
    '',
  ].join('\n');
}

function env(dir: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, HOME: dir, WANDB_API_KEY: TEST_KEY, WANDB_BASE_URL: fake.url, WANDB_AGENT_KILL_DELAY: '30' };
  for (const k of ['WANDB_ENTITY', 'WANDB_PROJECT', 'WANDB_MODE', 'WANDB_DIR', 'WANDB_SWEEP_ID', 'WANDB_RUN_ID', 'WANDB_SWEEP_PARAM_PATH', 'NETRC']) delete e[k];
  return e;
}

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A subprocess, asynchronously: the fake servers live in this process and must keep answering. */
function exec(command: string, args: string[], dir: string, childEnv: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { cwd: dir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.on('error', fail);
    child.on('close', (status) => {
      clearTimeout(timer);
      done({ status, stdout, stderr });
    });
  });
}

function cli(args: string[], dir: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<Result> {
  return exec(process.execPath, [BIN, ...args], dir, { ...env(dir), ...extraEnv });
}

function workDir(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Creates a sweep with `ort-dann sweep`; returns its ENTITY/PROJECT/ID. */
async function createSweep(dir: string, yaml: string): Promise<string> {
  writeFileSync(join(dir, 'sweep.yaml'), yaml);
  const r = await cli(['sweep', 'sweep.yaml', '--project', 'dann-sweeps'], dir);
  assert.equal(r.status, 0, `ort-dann sweep failed: ${r.stderr}`);
  const m = /ort-dann agent (\S+)/.exec(r.stdout);
  assert.ok(m, `no agent command printed: ${r.stdout}`);
  return m[1];
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]));
}

const metricRows = (runId: string, metric: string) => ([...fake.wandb.runs.values()].some((r) => r.name === runId) ? fake.wandb.history(runId).filter((row) => metric in row) : []);

test('ort-dann sweep creates the sweep from the YAML, with the distribution wandb fills; bad parameters fail first, naming the parameter', async () => {
  const dir = workDir('create');
  const path = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2, 2.0e-2]\n  lr-mult:\n    min: 10\n    max: 12\n  seed:\n    value: 3'));
  const [entity, project, id] = path.split('/');
  assert.deepEqual([entity, project], ['alice', 'dann-sweeps']);
  const sweep = fake.sweep(id);
  assert.equal(sweep.config.method, 'grid');
  assert.deepEqual(sweep.config.parameters, { lr: { values: [0.01, 0.02] }, 'lr-mult': { min: 10, max: 12, distribution: 'int_uniform' }, seed: { value: 3 } });
  assert.equal(sweep.pending.length, 6);

  const before = fake.sweeps.size;
  const cases: [string, RegExp][] = [
    ['  lambda_domain:\n    values: [0.1]', /parameters\.lambda_domain: "lambda_domain" is not an ort-dann train flag; did you mean lambda-domain\?/],
    ['  lr:\n    values: [1.0e-2, -1]', /parameters\.lr \(-1\): --lr -1: give a positive number/],
    ['  batch-size:\n    values: [0]', /parameters\.batch-size \(0\): --batch-size 0: must be an integer from 1 to 4096/],
    ['  ep:\n    values: [cpu, tpu]', /parameters\.ep \(tpu\): .*Choices/],
    ['  lr:\n    min: 1e-4\n    max: 1.0e-2', /parameters\.lr: min "1e-4" and max 0\.01 are ambiguous/],
  ];
  for (const [params, pattern] of cases) {
    writeFileSync(join(dir, 'bad.yaml'), sweepYaml(params));
    const r = await cli(['sweep', 'bad.yaml'], dir);
    assert.equal(r.status, 1, params);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected: ${r.stderr}`);
  }
  writeFileSync(join(dir, 'bad.yaml'), sweepYaml('  lr:\n    values: [1.0e-2]', { metric: 'train_loss' }));
  assert.match((await cli(['sweep', 'bad.yaml'], dir)).stderr, /bad\.yaml: metric\.name: train_loss is not logged once per epoch/);
  assert.equal(fake.sweeps.size, before, 'no sweep may be created from a bad config');
});

test('ort-dann agent trains every grid point as a run of the sweep, then exits on the controller\'s exit', async () => {
  const dir = workDir('grid');
  const path = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2, 2.0e-2]\n  domain:\n    value: true'));
  const id = path.split('/')[2];
  const started = Date.now();
  const r = await cli(['agent', path, '--heartbeat-seconds', '0.3'], dir);
  const seconds = (Date.now() - started) / 1000;
  assert.equal(r.status, 0, `agent failed: ${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /the sweep controller says exit/);
  const sweep = fake.sweep(id);
  assert.equal(sweep.handedOut.length, 2);
  const lrs: unknown[] = [];
  for (const runId of sweep.handedOut) {
    const run = fake.wandb.run(runId);
    assert.equal(run.project, 'dann-sweeps');
    assert.deepEqual(fake.runSweeps.get(runId), [id], 'the run joins the sweep on UpsertBucket');
    // The parameters unchanged under their own names, as the controller handed them out.
    lrs.push(run.config.lr.value);
    assert.equal(run.config.domain.value, true);
    assert.equal(run.state, 'finished');
    assert.equal(run.exitcode, 0);
    // One validation row per epoch (1 frozen + 1), the metric at top level.
    assert.equal(metricRows(runId, 'target_rmse_num_particles').length, 2);
    assert.ok(existsSync(join(dir, 'runs', runId, 'model.onnx')), 'the run directory is named after the run id');
    const params = readFileSync(join(dir, 'wandb', `sweep-${id}`, `config-${runId}.yaml`), 'utf8');
    // In the controller's order (ort-dann sweep sends the keys sorted, as yaml.dump does).
    assert.match(params, /^wandb_version: 1\n\ndomain:\n  value: true\nlr:\n  value: 0\.0[12]\n$/);
  }
  assert.deepEqual(lrs, [0.01, 0.02]);
  // The key is never written to disk: not in the run directories, the journals, the parameter files.
  for (const file of filesUnder(dir)) {
    if (statSync(file).size > 50e6) continue;
    assert.ok(!readFileSync(file).includes(TEST_KEY), `${file} holds the API key`);
  }
  process.stdout.write(`# two grid runs through ort-dann agent: ${seconds.toFixed(1)} s\n`);
});

test('stop ends a run gracefully (checkpoint kept, run finished), and the agent goes on', async () => {
  const dir = workDir('stop');
  const path = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]', { epochs: 200 }));
  const id = path.split('/')[2];
  let stopsSent = 0;
  fake.script = {
    heartbeat: (agent, live, c) => {
      const s = c.sweep(agent.sweepId);
      if (agent.sweepId !== id) return undefined;
      // Stop the run once its first epoch is in W&B, on every heartbeat while it lives (as the server repeats it).
      const runId = s.handedOut[0];
      if (runId && live.includes(runId) && metricRows(runId, 'valid_loss').length >= 1) {
        stopsSent++;
        return [{ type: 'stop', run_id: runId }];
      }
      return undefined;
    },
  };
  try {
    const r = await cli(['agent', path, '--heartbeat-seconds', '0.3'], dir);
    assert.equal(r.status, 0, `agent failed: ${r.stdout}\n${r.stderr}`);
    const runId = fake.sweep(id).handedOut[0];
    assert.ok(stopsSent >= 1);
    assert.match(r.stdout, new RegExp(`run ${runId}: stop requested`));
    assert.doesNotMatch(r.stdout, /killing it/);
    const run = fake.wandb.run(runId);
    assert.equal(run.state, 'finished', 'a stopped run is finished, not failed (bayes would impute a failed one as worst)');
    const epochs = metricRows(runId, 'valid_loss').length;
    assert.ok(epochs >= 1 && epochs < 201, `the run went on for ${epochs} epochs`);
    assert.ok(existsSync(join(dir, 'runs', runId, 'latest', 'model.safetensors')), 'the checkpoint is kept for --resume');
    assert.match(r.stderr, /terminated; saving the latest checkpoint/);
  } finally {
    fake.script = {};
  }
});

test('a crashing run does not take the agent down; failures end the agent as wandb counts them', async () => {
  const dir = workDir('crash');
  // Written straight into the controller: ort-dann sweep would refuse lr -1.
  const path = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]'));
  const id = path.split('/')[2];
  const s = fake.sweep(id);
  s.pending = [{ lr: { value: -1 } }, { lr: { value: 0.01 } }];
  const r = await cli(['agent', path, '--heartbeat-seconds', '0.3'], dir);
  assert.equal(r.status, 0, `agent failed: ${r.stdout}\n${r.stderr}`);
  const [bad, good] = s.handedOut;
  assert.match(r.stdout, new RegExp(`run ${bad} failed \\(exit code 1\\)`));
  assert.match(r.stderr, /WANDB_SWEEP_PARAM_PATH .*|--lr -1: give a positive number/);
  assert.equal(fake.wandb.run(good).state, 'finished');

  // Runs that crash at once (the sweep's command swapped on the controller), so the timing rule below holds on a busy machine.
  const crashing = (sweep: typeof s) => {
    sweep.configYaml = dumpYaml({ ...sweep.config, command: [process.execPath, '-e', 'process.exit(3)'] });
    sweep.pending = [1, 2, 3, 4].map((i) => ({ seed: { value: i } }));
  };
  // Three failures in the agent's first minute: it stops (wandb's flapping rule) with status 1.
  const path2 = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]'));
  const s2 = fake.sweep(path2.split('/')[2]);
  crashing(s2);
  const r2 = await cli(['agent', path2, '--heartbeat-seconds', '0.2'], dir);
  assert.equal(r2.status, 1);
  assert.equal(s2.handedOut.length, 3);
  assert.match(r2.stdout, /3 runs failed in the first 60 s; stopping/);

  // With the flapping check off, WANDB_AGENT_MAX_INITIAL_FAILURES failures in a row stop it.
  const path3 = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]'));
  const s3 = fake.sweep(path3.split('/')[2]);
  crashing(s3);
  const r3 = await cli(['agent', path3, '--heartbeat-seconds', '0.2'], dir, { WANDB_AGENT_DISABLE_FLAPPING: 'true', WANDB_AGENT_MAX_INITIAL_FAILURES: '2' });
  assert.equal(r3.status, 1);
  assert.equal(s3.handedOut.length, 2);
  assert.match(r3.stdout, /2 runs failed in a row; stopping/);

  // --count N: N runs, then the agent ends by itself.
  const path4 = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]'));
  const s4 = fake.sweep(path4.split('/')[2]);
  crashing(s4);
  const r4 = await cli(['agent', path4, '--count', '2', '--heartbeat-seconds', '0.2'], dir);
  assert.equal(r4.status, 0, r4.stdout + r4.stderr);
  assert.equal(s4.handedOut.length, 2);
  assert.match(r4.stdout, /2 runs done \(--count 2\)/);
});

test('400 and 404 from the controller end the agent as wandb\'s does; server errors are retried with back-off', async () => {
  const dir = workDir('errors');
  const path = await createSweep(dir, sweepYaml('  lr:\n    values: [1.0e-2]'));
  const s = fake.sweep(path.split('/')[2]);

  s.state = 'FINISHED';
  const finished = await cli(['agent', path], dir);
  assert.equal(finished.status, 1);
  assert.match(finished.stderr, /^ort-dann: W&B refused a new agent for sweep .* \(CreateAgent: HTTP 400: Sweep .* is not running\); the sweep is not running/);
  assert.equal(finished.stderr.trim().split('\n').length, 1);

  assert.match((await cli(['agent', 'alice/dann-sweeps/nosuch'], dir)).stderr, /^ort-dann: sweep alice\/dann-sweeps\/nosuch not found/);

  // Deleted while idle: the heartbeat's 404 ends the agent. A 500 before it is retried after a back-off.
  s.state = 'RUNNING';
  s.pending = [];
  fake.script = {
    heartbeat: (agent) => {
      if (agent.sweepId !== s.id) return undefined;
      s.deleted = true;
      return [];
    },
  };
  fake.heartbeatFaults = [500];
  try {
    const deleted = await cli(['agent', path, '--heartbeat-seconds', '0.2'], dir);
    assert.equal(deleted.status, 1, deleted.stdout + deleted.stderr);
    assert.match(deleted.stdout, /warning: Heartbeat failed: HTTP 500: injected 500; runs continue, next heartbeat in 2 s/);
    assert.match(deleted.stderr, /sweep .* was deleted, or W&B no longer knows agent/);
  } finally {
    fake.script = {};
    fake.heartbeatFaults = [];
  }
});

test('train honours a Python wandb agent\'s environment: the PyYAML parameter file, the run id, the sweep', async () => {
  const dir = workDir('python-agent');
  const path = await createSweep(dir, sweepYaml('  lambda-domain:\n    values: [0.3]'));
  const id = path.split('/')[2];
  // The file as wandb's config_util writes it (yaml.dump, sort_keys=False), by PyYAML itself.
  const paramPath = join(dir, 'wandb', `sweep-${id}`, 'config-pyrun001.yaml');
  const py = spawnSync('/usr/bin/python3', ['-c', `import yaml,sys,os
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
open(sys.argv[1], 'w').write('wandb_version: 1\\n\\n' + yaml.dump({'lambda-domain': {'value': 0.3}, 'domain': {'value': False}, 'lr': {'value': '1e-2'}}, Dumper=yaml.SafeDumper, default_flow_style=False, sort_keys=False))`, paramPath], { encoding: 'utf8' });
  assert.equal(py.status, 0, py.stderr);
  const fixed = sweepYaml('').split('\n').filter((l) => l.startsWith("- '")).map((l) => l.slice(3, -1));
  // ${args} as the Python agent writes it: Python's str() of each value (False, not false).
  const r = await exec(fixed[0], [...fixed.slice(1), '--lambda-domain=0.3', '--domain=False', '--lr=1e-2'], dir,
    { ...env(dir), WANDB_SWEEP_ID: id, WANDB_RUN_ID: 'pyrun001', WANDB_SWEEP_PARAM_PATH: paramPath, WANDB_PROJECT: 'dann-sweeps', WANDB_ENTITY: 'alice', WANDB_DIR: dir });
  assert.equal(r.status, 0, r.stderr);
  const run = fake.wandb.run('pyrun001');
  assert.deepEqual(fake.runSweeps.get('pyrun001'), [id]);
  assert.deepEqual([run.config['lambda-domain'].value, run.config.domain.value, run.config.lr.value], [0.3, false, '1e-2']);
  // --domain=False reached train as the switch off: the source-only baseline logs no domain loss.
  assert.equal(run.config.lambda_domain.value, 0);
  assert.equal(metricRows('pyrun001', 'target_rmse_num_particles').length, 2);
  assert.ok(existsSync(join(dir, 'runs', 'pyrun001', 'model.onnx')));
});

test('the agent without a key fails with one line', async () => {
  const dir = workDir('nokey');
  const e = env(dir);
  delete e.WANDB_API_KEY;
  const r = await exec(process.execPath, [BIN, 'agent', 'alice/p/x'], dir, e);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^ort-dann: ort-dann agent needs a W&B API key: set WANDB_API_KEY/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
});
