import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isUserError } from '../../src/errors.ts';
import { secretForms } from '../../src/tracking/reporter.ts';
import { FakeWandb, TEST_KEY } from '../helpers/fake-wandb.ts';
import { allFiles, CONFIG, session, sleep, tempDir } from './helpers.ts';
import { FAST, OUTPUTS, runScript } from './script.ts';

let fake: FakeWandb;
before(async () => {
  fake = await FakeWandb.start();
});
after(() => fake.close());

const HISTOGRAM_STEPS = [10, 20, 30, 40, 50, 60];

test('a scripted run reaches W&B whole under 500s, 429s, hangs and dropped connections', async (t) => {
  const dir = await tempDir(t);
  fake.inject('UpsertBucket', { kind: 'status', status: 502 });
  fake.inject('CreateRunFiles', { kind: 'drop' });
  fake.inject('upload', { kind: 'status', status: 503 });
  fake.inject('file_stream', { kind: 'status', status: 500 }, 2, 1);
  fake.inject('file_stream', { kind: 'hang' }, 1, 1);
  fake.inject('file_stream', { kind: 'drop' });
  fake.inject('file_stream', { kind: 'apply-then-drop' }, 2, 1);
  fake.inject('file_stream', { kind: 'status', status: 429, headers: { 'Retry-After': '0.3' } });

  const s = await session(fake, dir, { runId: 'online01' });
  assert.equal(s.tracking.mode, 'online');
  assert.equal(s.tracking.runUrl, `${fake.url}/alice/dann/runs/online01`);
  const { steps } = await runScript(s.tracking.callbacks, s.clock, {
    epochs: 3,
    batches: 20,
    nanAt: 7,
    infAt: 8,
    onStep: async (step) => {
      if (step === 3) s.stdout.write(`epoch 0 started with key ${TEST_KEY}\nprogress 10%\rprogress 100%\n`);
      await sleep(8);
    },
  });
  await s.tracking.finish(0, s.modelPath);

  const run = fake.run('online01');
  const rows = fake.history('online01');
  assert.equal(rows.length, steps, 'one history line per step');
  assert.deepEqual(rows.map((r) => r._step), Array.from({ length: steps }, (_, i) => i + 1), 'each step once, in order');
  assert.equal(run.gaps, 0);
  for (const r of rows) {
    for (const k of ['regression_loss', 'domain_loss', 'train_loss', 'raw_loss', 'lr_0', 'lr_1', 'mom_0', 'mom_1', 'wd_0', 'wd_1', 'sqr_mom_0', 'eps_0', 'alpha', 'epoch', '_runtime', '_timestamp']) {
      assert.ok(k in r, `step ${r._step} has ${k}`);
    }
  }
  assert.equal(rows[0].lr_1, 2e-3);
  assert.ok(Number.isNaN(rows[6].raw_loss), 'NaN survives');
  assert.equal(rows[7].raw_loss, Infinity, 'Infinity survives');
  assert.match(fake.lines('online01', 'wandb-history.jsonl')[6], /"raw_loss":NaN/);
  for (const [e, step] of [20, 40, 60].entries()) {
    const r = rows[step - 1];
    assert.equal(r.epoch, e + 1, 'epoch end logs the rounded epoch');
    assert.equal(r.valid_loss, 1 / (e + 1));
    assert.equal(r.domain_accuracy, 0.5 + 0.1 / (e + 1));
    for (const o of OUTPUTS) assert.ok(`rmse_${o}` in r);
  }
  assert.ok(!('valid_loss' in rows[18]));
  for (const r of rows) {
    const hist = r['parameters/fc1.weight'] as { _type: string; values: number[]; bins: number[] } | undefined;
    assert.equal(hist !== undefined, HISTOGRAM_STEPS.includes(r._step as number), `histograms every 10 steps (step ${r._step})`);
    if (!hist) continue;
    assert.equal(hist._type, 'histogram');
    assert.equal(hist.values.length, 64);
    assert.equal(hist.bins.length, 65);
    assert.equal(hist.values.reduce((a, b) => a + b, 0), 100);
    assert.ok('gradients/fc1.weight' in r);
    assert.deepEqual(r['parameters/fc1.bias'], { _type: 'histogram', values: [2], bins: [0.5, 0.5] });
  }

  assert.equal(run.config.lr.value, CONFIG.lr);
  assert.deepEqual(run.config.model.value, CONFIG.model);
  assert.ok(Number.isNaN(run.config.lambda.value));
  assert.ok((run.config._wandb.value as { t: unknown }).t);
  assert.equal(run.displayName, 'scripted');
  assert.deepEqual(run.tags, ['test']);

  const summary = fake.summary('online01')!;
  assert.equal(summary._step, 60);
  assert.equal(summary.valid_loss, 1 / 3);
  assert.equal(summary.epoch, 3);
  assert.equal((summary._wandb as { runtime: number }).runtime, 60);
  assert.equal(run.complete, true);
  assert.equal(run.exitcode, 0);
  assert.equal(run.state, 'finished');

  for (const name of ['config.yaml', 'wandb-metadata.json', 'wandb-summary.json', 'output.log', 'model.onnx']) {
    assert.ok(run.uploads.has(name), `${name} uploaded`);
    assert.ok(run.uploaded.includes(name), `${name} announced in file_stream "uploaded"`);
  }
  assert.equal(run.uploads.get('model.onnx')!.toString(), 'fake onnx model bytes');
  assert.match(run.uploads.get('config.yaml')!.toString(), /^wandb_version: 1\n/);
  assert.equal(fake.authLeaks, 0, 'uploads carry no credentials');

  const output = fake.lines('online01', 'output.log');
  assert.ok(output.some((l) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} epoch 0 started with key \*\*\*$/.test(l)), output.join('\n'));
  assert.ok(output.some((l) => l.endsWith(' progress 100%')) && !output.some((l) => l.endsWith('progress 10%')));

  const streamReqs = fake.requests.filter((r) => r.route === 'file_stream');
  for (const status of [500, 429, 'hang', 'drop'] as const) assert.ok(streamReqs.some((r) => r.status === status), `fault ${status} was exercised`);
  assert.equal(streamReqs.filter((r) => r.status === 'drop').length, 3, 'dropped before and after applying');
  const i429 = streamReqs.findIndex((r) => r.status === 429);
  assert.ok(streamReqs[i429 + 1].at - streamReqs[i429].at >= 280, 'Retry-After honoured');

  const sync = JSON.parse(await readFile(join(s.tracking.wandbDir!, 'sync.json'), 'utf8'));
  assert.equal(sync.complete, true);
  assert.ok(s.logs.some((l) => l.includes('runs/online01')) && s.logs.at(-1)!.includes('finished'));

  // The key is nowhere: not in what we print, the run directory, or what the server received outside auth headers.
  const secrets = secretForms(TEST_KEY);
  const texts = [...s.logs, ...(await allFiles(dir)).values(), ...fake.requests.map((r) => r.body), ...[...run.uploads.values()].map(String)];
  for (const text of texts) for (const secret of secrets) assert.ok(!text.includes(secret), `key leaked in: ${text.slice(0, 200)}`);
});

test('the Stop button in W&B ends training cleanly after the current step', async (t) => {
  const dir = await tempDir(t);
  const s = await session(fake, dir, { runId: 'stopme01', systemMetrics: false });
  const { steps, state } = await runScript(s.tracking.callbacks, s.clock, {
    epochs: 3,
    batches: 20,
    onStep: async (step) => {
      if (step === 5) fake.run('stopme01').stopped = true;
      await sleep(5);
    },
  });
  assert.ok(state.stopRequested);
  assert.ok(s.tracking.stopRequested);
  assert.ok(steps > 5 && steps < 60, `stopped at step ${steps}`);
  await s.tracking.finish(0);
  assert.equal(fake.history('stopme01').length, steps);
  assert.equal(fake.run('stopme01').state, 'finished');
  assert.ok(s.logs.some((l) => l.includes('stopped from the W&B UI')));
});

test('an idle run keeps posting heartbeats so W&B does not mark it crashed', async (t) => {
  const dir = await tempDir(t);
  const s = await session(fake, dir, { runId: 'idle0001', systemMetrics: false, timing: { ...FAST, heartbeatMs: 100 } });
  await sleep(450);
  await s.tracking.finish(0);
  const run = fake.run('idle0001');
  assert.ok(run.heartbeats >= 3, `heartbeats: ${run.heartbeats}`);
  const posts = fake.requests.filter((r) => r.route === 'file_stream' && r.path.includes('idle0001'));
  assert.ok(posts.length < 12, `idle posts stay at the heartbeat pace (${posts.length})`);
  assert.equal(run.state, 'finished');
});

test('a rejected key is a one-line UserError that names where the key came from, without the key', async (t) => {
  const dir = await tempDir(t);
  const badKey = 'bad0123456789abcdefghijklmnopqrstuvwxyz00';
  await assert.rejects(session(fake, dir, { apiKey: undefined, env: { WANDB_API_KEY: badKey } }), (e: Error) => {
    assert.ok(isUserError(e));
    assert.match(e.message, /W&B rejected the API key from WANDB_API_KEY \(HTTP 401/);
    assert.ok(!e.message.includes(badKey) && !e.message.includes('\n'));
    return true;
  });
});

test('an unknown or forbidden entity is a UserError naming --wandb-entity', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(session(fake, dir, { entity: 'nobody' }), (e: Error) => {
    assert.ok(isUserError(e));
    assert.match(e.message, /W&B has no entity "nobody" \(HTTP 404: entity nobody not found during upsertBucket\); fix --wandb-entity/);
    return true;
  });
  await assert.rejects(session(fake, dir, { entity: 'closed-team' }), (e: Error) => {
    assert.ok(isUserError(e));
    assert.match(e.message, /denied creating a run in closed-team\/dann .*permission denied.*--wandb-entity/);
    return true;
  });
});

test('an unreachable W&B turns the run offline with one warning', async (t) => {
  const dir = await tempDir(t);
  const closed = http.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const s = await session(undefined, dir, { baseUrl: `http://127.0.0.1:${port}`, runId: 'unreach1' });
  assert.equal(s.tracking.mode, 'offline');
  assert.equal(s.tracking.runUrl, undefined);
  assert.match(s.tracking.wandbDir!, /offline-run-\d{8}_\d{6}-unreach1$/);
  const warnings = s.logs.filter((l) => l.startsWith('WARN'));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /cannot reach W&B at http:\/\/127\.0\.0\.1:\d+ .*logging offline, upload later with: ort-dann wandb-sync /);
  await runScript(s.tracking.callbacks, s.clock, { epochs: 1, batches: 5 });
  await s.tracking.finish(0);
  assert.ok(existsSync(join(s.tracking.wandbDir!, 'exit.json')));
});

test('a server that hangs at start is given up on after the attempts allowed', async (t) => {
  const dir = await tempDir(t);
  fake.inject('UpsertBucket', { kind: 'hang' }, 3);
  const started = Date.now();
  const s = await session(fake, dir, { runId: 'hangs001', timing: { ...FAST, graphqlTimeoutMs: 150 } });
  assert.equal(s.tracking.mode, 'offline');
  assert.ok(Date.now() - started < 2000);
  await s.tracking.finish(0);
});
