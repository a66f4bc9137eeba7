import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { captureConsole } from '../../src/tracking/wandb/console.ts';
import { parseWandbJson } from '../../src/tracking/extended-json.ts';
import { chartGroups, niceTicks } from '../../src/tracking/report-html.ts';
import { parseGpuInfo, parseGpuMetrics, SystemMonitor } from '../../src/tracking/wandb/system-metrics.ts';
import { TEST_KEY } from '../helpers/fake-wandb.ts';
import { session, sleep, tempDir } from './helpers.ts';
import { runScript } from './script.ts';

test('disabled mode still writes metrics.jsonl and a self-contained report.html, and no W&B files', async (t) => {
  const dir = await tempDir(t);
  const s = await session(undefined, dir, { mode: 'disabled', config: { lr: 1e-3, note: `<b>${TEST_KEY}</b>` } });
  assert.equal(s.tracking.mode, 'disabled');
  assert.equal(s.tracking.callbacks.length, 2);
  await runScript(s.tracking.callbacks, s.clock, { epochs: 2, batches: 10, nanAt: 3 });
  await s.tracking.finish(0, s.modelPath);
  assert.equal(existsSync(join(dir, 'wandb')), false);

  const lines = (await readFile(join(dir, 'metrics.jsonl'), 'utf8')).trim().split('\n');
  const rows = lines.map((l) => parseWandbJson(l) as Record<string, number>);
  assert.deepEqual(rows.map((r) => r._step), Array.from({ length: 20 }, (_, i) => i + 1));
  assert.ok(Number.isNaN(rows[2].raw_loss));
  assert.equal(rows[9].valid_loss, 1);
  assert.equal(rows[9].epoch, 1);
  assert.ok(!lines.some((l) => l.includes('histogram')), 'histograms stay out of metrics.jsonl');

  const html = await readFile(join(dir, 'report.html'), 'utf8');
  assert.match(html, /^<!doctype html>/);
  assert.doesNotMatch(html, /<script|<link|src="http|href="http/i, 'no external resources');
  for (const title of ['Losses', 'RMSE (source validation)', 'Domain classifier accuracy', 'Learning rate per group', 'GRL alpha']) assert.ok(html.includes(title), title);
  assert.ok((html.match(/<svg /g) ?? []).length >= 6);
  assert.ok(html.includes('&lt;b&gt;***&lt;/b&gt;'), 'config escaped and the key redacted');
  assert.ok(!html.includes(TEST_KEY));
});

test('a resumed run appends to metrics.jsonl and its report keeps the earlier curves', async (t) => {
  const dir = await tempDir(t);
  const first = await session(undefined, dir, { mode: 'disabled' });
  await runScript(first.tracking.callbacks, first.clock, { epochs: 1, batches: 5 });
  await first.tracking.finish(0);
  const second = await session(undefined, dir, { mode: 'disabled' });
  const cbs = second.tracking.callbacks;
  const { state } = await runScript([], second.clock, { epochs: 1, batches: 5 });
  state.step = 6;
  for (const cb of cbs) cb.afterBatch?.(state);
  await second.tracking.finish(0);
  const steps = (await readFile(join(dir, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => (parseWandbJson(l) as { _step: number })._step);
  assert.deepEqual(steps, [1, 2, 3, 4, 5, 6]);
  const html = await readFile(join(dir, 'report.html'), 'utf8');
  assert.ok(html.includes('<circle cx="64.0"'), 'the curve still starts at step 1');
});

test('offline mode keeps the run journal under runDir/wandb with the documented files', async (t) => {
  const dir = await tempDir(t);
  const s = await session(undefined, dir, { mode: 'offline', runId: 'journal1' });
  s.stdout.write('hello from training\n');
  await runScript(s.tracking.callbacks, s.clock, { epochs: 1, batches: 12, onStep: () => sleep(5) });
  await s.tracking.finish(3, s.modelPath);
  const j = s.tracking.wandbDir!;
  assert.deepEqual((await readdir(j)).sort(), ['exit.json', 'files', 'run.json']);
  assert.deepEqual((await readdir(join(j, 'files'))).sort(), ['config.yaml', 'output.log', 'wandb-events.jsonl', 'wandb-history.jsonl', 'wandb-metadata.json', 'wandb-summary.json']);
  const run = JSON.parse(await readFile(join(j, 'run.json'), 'utf8').then((x) => x.replace(/NaN/g, 'null')));
  assert.equal(run.format, 'ort-dann-wandb-run');
  assert.equal(run.runId, 'journal1');
  assert.equal(run.project, 'dann');
  const exit = JSON.parse(await readFile(join(j, 'exit.json'), 'utf8'));
  assert.equal(exit.exitCode, 3);
  assert.deepEqual(exit.files, [{ name: 'model.onnx', path: '../../model.onnx' }]);
  const history = (await readFile(join(j, 'files', 'wandb-history.jsonl'), 'utf8')).trim().split('\n');
  assert.equal(history.length, 12);
  const events = (await readFile(join(j, 'files', 'wandb-events.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(events.length >= 1, 'system metrics sampled');
  assert.equal(events[0]._wandb, true);
  for (const k of ['system.cpu', 'system.memory_percent', 'system.proc.memory.rssMB']) assert.equal(typeof events[0][k], 'number', k);
  assert.match(await readFile(join(j, 'files', 'output.log'), 'utf8'), /^\d{4}-\d\d-\d\dT[\d:.]{15} hello from training$/m);
  const meta = JSON.parse(await readFile(join(j, 'files', 'wandb-metadata.json'), 'utf8'));
  assert.equal(meta.program, 'ort-dann');
  assert.ok(meta.host && meta.startedAt && meta.cpu_count > 0);
});

test('console capture passes writes through, splits lines, keeps a progress bar final state, and restores', () => {
  const out = new PassThrough();
  const err = new PassThrough();
  const seen: string[] = [];
  const original = out.write;
  const restore = captureConsole((text, stderr) => seen.push(`${stderr ? 'E' : 'O'}:${text}`), { stdout: out, stderr: err });
  out.write('one\ntw');
  out.write(Buffer.from('o\r\n'));
  err.write('bar 10%\rbar 50%\r');
  err.write('bar 100%\n');
  out.write('partial');
  restore();
  assert.equal(out.write, original);
  assert.deepEqual(seen, ['O:one', 'O:two', 'E:bar 100%', 'O:partial']);
  assert.equal(out.read().toString(), 'one\ntwo\r\npartial');
});

test('GPU metrics from nvidia-smi CSV, [N/A] fields skipped', () => {
  const csv = '0, 87, 40, 10240, 81559, 65, 250.5, 700.00\n1, 0, 0, 3, 81559, 30, [N/A], [N/A]\n';
  assert.deepEqual(parseGpuMetrics(csv), {
    'gpu.0.gpu': 87, 'gpu.0.memory': 40, 'gpu.0.memoryAllocated': (10240 / 81559) * 100, 'gpu.0.memoryAllocatedBytes': 10240 * 1024 * 1024,
    'gpu.0.temp': 65, 'gpu.0.powerWatts': 250.5, 'gpu.0.powerPercent': (250.5 / 700) * 100,
    'gpu.1.gpu': 0, 'gpu.1.memory': 0, 'gpu.1.memoryAllocated': (3 / 81559) * 100, 'gpu.1.memoryAllocatedBytes': 3 * 1024 * 1024, 'gpu.1.temp': 30,
  });
  // Captured from an H200 with the monitor's own queries.
  assert.deepEqual(parseGpuMetrics('0, 0, 0, 0, 143771, 37, 122.99, 700.00\n'), {
    'gpu.0.gpu': 0, 'gpu.0.memory': 0, 'gpu.0.memoryAllocated': 0, 'gpu.0.memoryAllocatedBytes': 0, 'gpu.0.temp': 37, 'gpu.0.powerWatts': 122.99,
    'gpu.0.powerPercent': (122.99 / 700) * 100,
  });
  assert.deepEqual(parseGpuInfo('NVIDIA H200, 143771\n'), [{ name: 'NVIDIA H200', memoryTotal: 143771 * 1024 * 1024 }]);
});

test('without nvidia-smi the monitor reports CPU and memory only', async () => {
  const monitor = new SystemMonitor(() => {}, { intervalMs: 1000, nvidiaSmi: 'no-such-nvidia-smi-here' });
  const m = await monitor.sample();
  assert.ok(m.cpu >= 0 && m.memory_percent > 0 && m['proc.memory.rssMB'] > 0);
  assert.ok(!Object.keys(m).some((k) => k.startsWith('gpu.')));
});

test('report charts group curves by family and use round ticks', () => {
  const groups = chartGroups(['train_loss', 'valid_loss', 'rmse_a', 'lr_0', 'lr_1', 'mom_0', 'sqr_mom_0', 'eps_0', 'epoch', 'alpha', 'domain_accuracy', 'custom']);
  assert.deepEqual(groups.map((g) => [g.title, g.keys]), [
    ['Losses', ['train_loss', 'valid_loss']],
    ['a: RMSE (source validation) and target errors', ['rmse_a']],
    ['Domain classifier accuracy', ['domain_accuracy']],
    ['Learning rate per group', ['lr_0', 'lr_1']],
    ['Momentum per group', ['mom_0']],
    ['GRL alpha', ['alpha']],
    ['custom', ['custom']],
  ]);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(3, 47), [10, 20, 30, 40]);
});
