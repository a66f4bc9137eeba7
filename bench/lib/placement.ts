/**
 * Which execution provider runs each node of a model: opens one ORT session with [ep, cpu] at
 * verbose logging and summarises ORT's "Node placements" report (nodes per provider, op types that
 * fell back to the CPU), with the session creation time. A diagnostic for the GPU check.
 *   node --import tsx bench/lib/placement.ts webgpu|cuda [IMAGE_SIZE] [ARTIFACTS_ROOT]
 * (the training model of the default config, built when missing). ORT writes its log from native
 * code to stderr, so the session is opened in a child process whose stderr goes to a file that is
 * parsed here (a pipe would drop lines: Node makes it non-blocking and native writes get EAGAIN).
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { artifactsFor } from '../train-step.ts';

const [ep, size = '128', root = 'artifacts'] = process.argv.slice(2);
const model = join(await artifactsFor(root, Number(size)), 'training_model.onnx');

if (process.env.ORT_DANN_PLACEMENT_CHILD) {
  ort.env.logLevel = 'verbose';
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep, 'cpu'], logSeverityLevel: 0, graphOptimizationLevel: 'all' });
  console.log(`session created in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  await session.release();
} else {
  const dir = mkdtempSync(join(tmpdir(), 'ort-dann-placement-'));
  const file = join(dir, 'ort.log');
  const fd = openSync(file, 'w');
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env: { ...process.env, ORT_DANN_PLACEMENT_CHILD: '1' }, stdio: ['ignore', 'inherit', fd] });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  closeSync(fd);
  const lines = readFileSync(file, 'utf8').split('\n');
  rmSync(dir, { recursive: true, force: true });
  const counts = (ops: string[]) => {
    const n = new Map<string, number>();
    for (const op of ops) n.set(op, (n.get(op) ?? 0) + 1);
    return [...n].sort((a, b) => b[1] - a[1]).map(([op, k]) => `${op}×${k}`).join(', ');
  };
  // "<ep> kernel not found in registries for Op type: X" (INFO): the ops the provider cannot run.
  const missing = lines.flatMap((l) => /kernel not found in registries for Op type: (\w+)/.exec(l)?.[1] ?? []);
  if (missing.length > 0) console.log(`no ${ep} kernel for: ${counts(missing)}`);
  let placed = 0;
  let provider = '';
  const onCpu: string[] = [];
  for (const line of lines) {
    const m = /(All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (m) {
      placed++;
      provider = m[2];
      console.log(`${m[2]}: ${m[3]} nodes`);
    } else if (provider === 'CPUExecutionProvider' && /VerifyEachNodeIsAssignedToAnEp\]\s+\w+ \(/.test(line)) {
      // Mixed placement: the nodes follow their header as "OpType (node name)", one or several per line.
      for (const [, op] of line.slice(line.indexOf(']') + 1).matchAll(/(\w+) \(/g)) onCpu.push(op);
    } else {
      provider = '';
    }
  }
  if (onCpu.length > 0) console.log(`  on the CPU: ${counts(onCpu)}`);
  // Without a placement report the session failed: show ORT's errors and warnings, not its verbose chatter.
  if (placed === 0 || code !== 0) console.log(lines.filter((l) => !/\[V:onnxruntime/.test(l) && l.trim()).slice(-15).join('\n'));
  process.exitCode = code ?? 1;
}
