/**
 * Where the train step's time goes, and where thread scaling is lost: ORT's per-node profile of the
 * training graph (enableProfiling) at each thread count, per node summed over the timed steps.
 *   npm run bench -- profile [--image-size 128] [--batch 16+16] [--threads 1,2] [--steps 3] [--warmup 1] [--top 25] [--json]
 * Nodes are grouped by op type and output shape (the graph's node names do not name layers; shapes
 * do). `lost` = t(n) − t(first)·first/n: the time a group would save if it scaled perfectly from the
 * first thread count; ranked by it. Thread counts run one after another in this process.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { createRng } from '../src/rng.ts';
import { dannTrainStep } from '../src/training/dann-step.ts';
import { TrainingSession } from '../src/training/session.ts';
import { type ArgSpec, parseArgs, parseBatch } from './lib/args.ts';
import { syntheticBatch } from './lib/batch.ts';
import { artifactsFor } from './train-step.ts';

export const PROFILE_ARGS = {
  imageSize: { type: 'int', default: 128, min: 32, help: 'image size in pixels' },
  batch: { type: 'string', default: '16+16', help: 'source+target rows' },
  threads: { type: 'ints', default: [1, 2], min: 1, help: 'thread counts to compare' },
  steps: { type: 'int', default: 3, min: 1, help: 'profiled steps' },
  warmup: { type: 'int', default: 1, min: 0, help: 'unprofiled steps first' },
  top: { type: 'int', default: 25, min: 1, help: 'groups listed' },
  artifactsRoot: { type: 'string', default: 'artifacts', help: 'where the bench artifacts are built' },
  json: { type: 'flag', help: 'print every group as JSON' },
} satisfies ArgSpec;

interface TraceEvent { cat: string; name: string; ts: number; dur: number; args?: { op_name?: string; output_type_shape?: Record<string, number[]>[] } }

/** ms per step by group key, from the timed runs of one profile file. */
function perGroup(file: string, warmup: number, steps: number): { groups: Map<string, { ms: number; nodes: number }>; runMs: number } {
  const events = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  if (runs.length < warmup + steps) throw new Error(`internal: profile has ${runs.length} runs, expected ${warmup + steps}`);
  const t0 = runs[warmup].ts;
  const timed = runs.slice(warmup);
  const groups = new Map<string, { ms: number; nodes: number; names: Set<string> }>();
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || e.ts < t0) continue;
    const shape = e.args?.output_type_shape?.map((o) => Object.values(o)[0]?.join('×')).join(',') ?? '?';
    const key = `${e.args?.op_name ?? '?'} → ${shape}`;
    const g = groups.get(key) ?? { ms: 0, nodes: 0, names: new Set<string>() };
    g.ms += e.dur / 1000 / steps;
    g.names.add(e.name);
    groups.set(key, g);
  }
  return {
    groups: new Map([...groups].map(([k, g]) => [k, { ms: g.ms, nodes: g.names.size }])),
    runMs: timed.reduce((s, r) => s + r.dur, 0) / 1000 / steps,
  };
}

export async function benchProfile(argv: string[]): Promise<void> {
  const o = parseArgs('profile', argv, PROFILE_ARGS);
  const { nSource, nTarget } = parseBatch(o.batch);
  const count = nSource + nTarget;
  const dir = await artifactsFor(o.artifactsRoot, o.imageSize);
  const out = mkdtempSync(join(tmpdir(), 'ort-dann-profile-'));
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (f: string, opt?: ort.InferenceSession.SessionOptions) => Promise<ort.InferenceSession>;
  const results: { threads: number; runMs: number; groups: Map<string, { ms: number; nodes: number }> }[] = [];
  try {
    for (const threads of o.threads) {
      let profiled: ort.InferenceSession | undefined;
      const prefix = join(out, `t${threads}`);
      // Profile only the training graph: wrap create for the sessions this TrainingSession opens.
      (ort.InferenceSession as { create: unknown }).create = async (file: string, opt: ort.InferenceSession.SessionOptions = {}) => {
        const train = basename(file) === 'training_model.onnx';
        const s = await create(file, train ? { ...opt, enableProfiling: true, profileFilePrefix: prefix } : opt);
        if (train) profiled = s;
        return s;
      };
      const session = await TrainingSession.fromArtifacts(dir, { threads });
      (ort.InferenceSession as { create: unknown }).create = create;
      const { imageSize, outputs } = session.manifest.config;
      const batch = syntheticBatch(createRng(0).fork('bench'), { count, nSource, imageSize, outputs: outputs.length });
      const load = loadavg()[0];
      for (let k = 0; k < o.warmup + o.steps; k++) {
        await dannTrainStep(session, batch, { alpha: 0.5, lambdaDomain: 0.1 });
        session.lazyResetGrad();
      }
      profiled!.endProfiling();
      await session.release();
      const file = readdirSync(out).find((f) => f.startsWith(`t${threads}`) && f.endsWith('.json'));
      if (!file) throw new Error(`internal: no profile written under ${out}`);
      const r = perGroup(join(out, file), o.warmup, o.steps);
      results.push({ threads, ...r });
      console.error(`profile: ${threads} threads, ${r.runMs.toFixed(0)} ms per train step (fwd+bwd), load average ${load.toFixed(2)} before, ${loadavg()[0].toFixed(2)} after`);
    }
  } finally {
    (ort.InferenceSession as { create: unknown }).create = create;
    rmSync(out, { recursive: true, force: true });
  }
  report(results, o.top, o.json);
}

/** By time lost to scaling; with one thread count, by time. */
const rank = <T extends { ms: number[]; lost: number }>(a: T, b: T) => (a.ms.length > 1 ? b.lost - a.lost : b.ms[0] - a.ms[0]);

function report(results: { threads: number; runMs: number; groups: Map<string, { ms: number; nodes: number }> }[], top: number, json: boolean): void {
  const [first, ...rest] = results;
  const last = rest.at(-1) ?? first;
  const keys = [...new Set(results.flatMap((r) => [...r.groups.keys()]))];
  const rows = keys.map((key) => {
    const ms = results.map((r) => r.groups.get(key)?.ms ?? 0);
    const t1 = ms[0];
    const tn = ms.at(-1)!;
    return { key, nodes: first.groups.get(key)?.nodes ?? last.groups.get(key)?.nodes ?? 0, ms, speedup: tn > 0 ? t1 / tn : NaN, lost: tn - (t1 * first.threads) / last.threads };
  }).sort(rank);
  if (json) {
    for (const r of rows) console.log(JSON.stringify({ group: r.key, nodes: r.nodes, ms: Object.fromEntries(results.map((x, i) => [x.threads, r.ms[i]])), speedup: r.speedup, lost_ms: r.lost }));
    return;
  }
  const byOp = new Map<string, number[]>();
  for (const r of rows) {
    const op = r.key.split(' → ')[0];
    const acc = byOp.get(op) ?? results.map(() => 0);
    r.ms.forEach((v, i) => (acc[i] += v));
    byOp.set(op, acc);
  }
  const head = results.map((r) => `${r.threads} thr ms`).join(' | ');
  console.log(`train step (fwd+bwd) ms: ${results.map((r) => `${r.threads} threads ${r.runMs.toFixed(0)}`).join(', ')}; speed-up ${(first.runMs / last.runMs).toFixed(2)}×`);
  console.log(`\nby op type (ms per step), ranked by ${rest.length ? 'time lost to scaling' : 'time'}:\n| op | ${head} | speed-up | lost ms |\n|---|${results.map(() => '---|').join('')}---|---|`);
  const opRows = [...byOp].map(([op, ms]) => ({ op, ms, lost: ms.at(-1)! - (ms[0] * first.threads) / last.threads })).sort(rank);
  for (const r of opRows.slice(0, top)) console.log(`| ${r.op} | ${r.ms.map((v) => v.toFixed(1)).join(' | ')} | ${(r.ms[0] / r.ms.at(-1)!).toFixed(2)}× | ${r.lost.toFixed(1)} |`);
  console.log(`\nby op and output shape (nodes), ranked by ${rest.length ? 'time lost to scaling' : 'time'}:\n| group | nodes | ${head} | speed-up | lost ms |\n|---|---|${results.map(() => '---|').join('')}---|---|`);
  for (const r of rows.slice(0, top)) console.log(`| ${r.key} | ${r.nodes} | ${r.ms.map((v) => v.toFixed(1)).join(' | ')} | ${r.speedup.toFixed(2)}× | ${r.lost.toFixed(1)} |`);
}
