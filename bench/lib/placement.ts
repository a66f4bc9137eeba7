/**
 * Which execution provider runs each node of a model: opens one ORT session with [ep, cpu] at
 * verbose logging and summarises ORT's "Node placements" report (nodes per provider, op types that
 * fell back to the CPU), with the session creation time. A diagnostic for the GPU check.
 *   node --import tsx bench/lib/placement.ts MODEL.onnx webgpu|cuda
 * ORT writes its log from native code to stderr, so the session is opened in a child process whose
 * stderr is parsed here.
 */
import { spawn } from 'node:child_process';
import * as ort from 'onnxruntime-node';

const [model, ep] = process.argv.slice(2);

if (process.env.ORT_DANN_PLACEMENT_CHILD) {
  ort.env.logLevel = 'verbose';
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(model, { executionProviders: [ep, 'cpu'], logSeverityLevel: 0, graphOptimizationLevel: 'all' });
  console.log(`session created in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  await session.release();
} else {
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env: { ...process.env, ORT_DANN_PLACEMENT_CHILD: '1' }, stdio: ['ignore', 'inherit', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d: Buffer) => { log += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const lines = log.split('\n');
  let placed = 0;
  lines.forEach((line, i) => {
    const m = /(All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)/.exec(line);
    if (!m) return;
    placed++;
    console.log(`${m[2]}: ${m[3]} nodes`);
    // Mixed placement: the next line lists "OpType (node name), …" for this provider.
    if (m[1] === 'Node(s)' && m[2] === 'CPUExecutionProvider') {
      const ops = new Map<string, number>();
      for (const [, op] of (lines[i + 1] ?? '').matchAll(/(\w+) \(/g)) ops.set(op, (ops.get(op) ?? 0) + 1);
      console.log(`  on the CPU: ${[...ops].sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op}×${n}`).join(', ')}`);
    }
  });
  // Without a placement report the session failed: show ORT's errors and warnings, not its verbose chatter.
  if (placed === 0 || code !== 0) console.log(lines.filter((l) => !/\[V:onnxruntime/.test(l) && l.trim()).slice(-15).join('\n'));
  process.exitCode = code ?? 1;
}
