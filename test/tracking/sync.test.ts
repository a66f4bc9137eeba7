import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { isUserError } from '../../src/errors.ts';
import { syncRunDir } from '../../src/tracking/wandb/sync.ts';
import { FakeWandb, TEST_KEY } from '../helpers/fake-wandb.ts';
import { session, sleep, tempDir } from './helpers.ts';
import { FAST, runScript, type Script } from './script.ts';

let fake: FakeWandb;
before(async () => {
  fake = await FakeWandb.start();
});
after(() => fake.close());

const execFileP = promisify(execFile);
const SCRIPT: Script = { epochs: 2, batches: 15, nanAt: 4 };
const syncOptions = { apiKey: TEST_KEY, env: {}, timing: FAST, logger: { info: () => {}, warn: () => {} } };

test('an offline run synced later gives the server the same history, summary and files as an online run', async (t) => {
  const online = await session(fake, await tempDir(t), { runId: 'twin0on1', systemMetrics: false });
  await runScript(online.tracking.callbacks, online.clock, SCRIPT);
  await online.tracking.finish(0, online.modelPath);

  const offlineDir = await tempDir(t);
  const offline = await session(undefined, offlineDir, { mode: 'offline', runId: 'twin0off', systemMetrics: false });
  assert.equal(offline.tracking.mode, 'offline');
  assert.match(offline.tracking.wandbDir!, /wandb\/offline-run-\d{8}_\d{6}-twin0off$/);
  await runScript(offline.tracking.callbacks, offline.clock, SCRIPT);
  await offline.tracking.finish(0, offline.modelPath);
  assert.equal(fake.runs.size > 0 && [...fake.runs.values()].some((r) => r.name === 'twin0off'), false, 'offline sends nothing');

  const [result] = await syncRunDir(offlineDir, { ...syncOptions, baseUrl: fake.url });
  assert.equal(result.complete, true);
  assert.equal(result.url, `${fake.url}/alice/dann/runs/twin0off`);

  assert.deepEqual(fake.lines('twin0off', 'wandb-history.jsonl'), fake.lines('twin0on1', 'wandb-history.jsonl'));
  assert.equal(fake.history('twin0off').length, 30);
  assert.deepEqual(fake.summary('twin0off'), fake.summary('twin0on1'));
  const [a, b] = [fake.run('twin0on1'), fake.run('twin0off')];
  assert.deepEqual({ ...b.config, lambda: 0 }, { ...a.config, lambda: 0 });
  assert.equal(b.state, 'finished');
  assert.deepEqual([...b.uploads.keys()].sort(), [...a.uploads.keys()].sort());
  assert.deepEqual(b.uploads.get('model.onnx'), a.uploads.get('model.onnx'));

  // A second sync finds the run complete and sends nothing.
  const before = fake.requests.length;
  const [again] = await syncRunDir(offlineDir, { ...syncOptions, baseUrl: fake.url });
  assert.equal(again.alreadySynced, true);
  assert.equal(fake.requests.length, before);
});

test('an outage longer than the run spills to disk; wandb-sync sends the rest exactly once', async (t) => {
  const dir = await tempDir(t);
  const s = await session(fake, dir, {
    runId: 'outage01',
    systemMetrics: false,
    timing: { ...FAST, finishTimeoutMs: 600, memoryBytes: 512 },
  });
  // The first requests go through, then W&B is down until after the run.
  fake.inject('file_stream', { kind: 'status', status: 503 }, 1_000_000, 2);
  const { steps } = await runScript(s.tracking.callbacks, s.clock, { epochs: 2, batches: 20, onStep: () => sleep(3) });
  await s.tracking.finish(0, s.modelPath);
  const partial = fake.history('outage01').length;
  assert.ok(partial < steps, `only part of the run got through (${partial})`);
  assert.equal(fake.run('outage01').complete, false);
  assert.match(s.logs.join('\n'), /upload failed \(HTTP 503/);
  assert.match(s.logs.at(-1)!, /did not finish; .*ort-dann wandb-sync /);
  const sync = JSON.parse(await readFile(join(s.tracking.wandbDir!, 'sync.json'), 'utf8'));
  assert.equal(sync.acked['wandb-history.jsonl'], partial);

  // W&B is back: one fault left to show sync retries too, then everything goes through.
  fake.clearFaults();
  fake.inject('file_stream', { kind: 'apply-then-drop' });
  const [result] = await syncRunDir(dir, { ...syncOptions, baseUrl: fake.url });
  assert.equal(result.complete, true);
  const rows = fake.history('outage01');
  assert.deepEqual(rows.map((r) => r._step), Array.from({ length: steps }, (_, i) => i + 1));
  assert.equal(fake.run('outage01').gaps, 0);
  assert.equal(fake.run('outage01').state, 'finished');
  assert.ok(fake.run('outage01').uploads.has('model.onnx'));
});

test('a file_stream error that retrying cannot fix is reported once and training carries on', async (t) => {
  const dir = await tempDir(t);
  const s = await session(fake, dir, { runId: 'final403', systemMetrics: false });
  fake.inject('file_stream', { kind: 'status', status: 403, body: '{"error":"run is locked"}' }, 1_000_000, 1);
  const { steps } = await runScript(s.tracking.callbacks, s.clock, { epochs: 1, batches: 20, onStep: () => sleep(2) });
  assert.equal(steps, 20);
  await s.tracking.finish(0);
  const refusals = s.logs.filter((l) => l.includes('refused run data'));
  assert.equal(refusals.length, 1);
  assert.match(refusals[0], /HTTP 403: \{"error":"run is locked"\}/);
  fake.clearFaults();
  const [result] = await syncRunDir(dir, { ...syncOptions, baseUrl: fake.url });
  assert.equal(result.complete, true);
  assert.equal(fake.history('final403').length, 20);
});

test('wandb-sync needs a key, and says so in one line', async (t) => {
  const dir = await tempDir(t);
  const s = await session(undefined, dir, { mode: 'offline', runId: 'nokey001', systemMetrics: false });
  await s.tracking.finish(0);
  await assert.rejects(syncRunDir(dir, { env: {}, homeDir: dir, baseUrl: fake.url }), (e: Error) => {
    assert.ok(isUserError(e));
    assert.match(e.message, /wandb-sync needs a W&B API key: set WANDB_API_KEY, or add "machine 127\.0\.0\.1:\d+ login user password <key>" to ~\/\.netrc/);
    return true;
  });
});

test('a run that died without finishing is synced as failed', async (t) => {
  const dir = await tempDir(t);
  const s = await session(undefined, dir, { mode: 'offline', runId: 'crashed1', systemMetrics: false });
  await runScript(s.tracking.callbacks, s.clock, { epochs: 1, batches: 5 });
  // No finish: the process "died". The journal still holds every closed row.
  await sleep(50);
  const warnings: string[] = [];
  const [result] = await syncRunDir(dir, { ...syncOptions, baseUrl: fake.url, logger: { info: () => {}, warn: (m) => warnings.push(m) } });
  assert.equal(result.complete, true);
  assert.equal(fake.history('crashed1').length, 5);
  assert.equal(fake.run('crashed1').state, 'failed');
  assert.equal(fake.run('crashed1').exitcode, 1);
  assert.ok(warnings.some((w) => /no exit record/.test(w)));
});

test('ort-dann wandb-sync <run-dir> uploads with the key from the environment and prints the run URL', async (t) => {
  const dir = await tempDir(t);
  const s = await session(undefined, dir, { mode: 'offline', runId: 'cli00001', systemMetrics: false });
  await runScript(s.tracking.callbacks, s.clock, { epochs: 1, batches: 4 });
  await s.tracking.finish(0);
  const env = { ...process.env, WANDB_API_KEY: TEST_KEY, WANDB_BASE_URL: fake.url };
  const { stdout, stderr } = await execFileP(process.execPath, ['bin/ort-dann.js', 'wandb-sync', dir], { env });
  assert.equal(stdout, `${fake.url}/alice/dann/runs/cli00001\n`);
  assert.ok(!stderr.includes(TEST_KEY));
  assert.equal(fake.history('cli00001').length, 4);
  await assert.rejects(execFileP(process.execPath, ['bin/ort-dann.js', 'wandb-sync', join(dir, 'nope')], { env }), (e: { stderr: string; code: number }) => {
    assert.equal(e.code, 1);
    assert.match(e.stderr, /^ort-dann: .*nope does not exist; name an ort-dann run directory\n$/);
    return true;
  });
});
