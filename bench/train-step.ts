/**
 * Train-step throughput of our artifacts (forward, backward, optimizer) against the seed's PyTorch
 * model, side by side in one invocation, same batch and threads:
 *   npm run bench -- train-step [--image-size 128 --batch 16+16]... [--threads 1,2] [--rounds 3]
 *     [--peer torch] [--json] … (options: TRAIN_STEP_ARGS)
 * Several --image-size/--batch pairs may be given (default 128 px 16+16 and 256 px 8+8). Artifacts
 * are built when missing or older than the compiler's sources; --rebuild builds them afresh. Each side
 * runs in its own child process, one after the other (never together: they would share the cores),
 * `--rounds` times, taking turns. Per config and thread count: images/s (median of the timed steps),
 * achieved nominal GFLOP/s, peak RSS, start-up (spawn to the end of the first step); with --peer torch
 * the same for PyTorch and the ratio; with several thread counts, a scaling table.
 */
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../src/errors.ts';
import { buildArtifacts } from '../src/model/build-artifacts.ts';
import { makeConfig } from '../src/model/config.ts';
import { type ArgSpec, parseArgs, parseBatch } from './lib/args.ts';
import { median } from './lib/stats.ts';
import { type ChildRun, type Json, runChild } from './lib/child.ts';
import { trainGflopPerImage } from './lib/flops.ts';

/** One side's figures; all null, with `error` set, when that side failed (e.g. an EP that cannot run the graph). */
interface SideFigures {
  images_per_s: number | null;
  gflops: number | null;
  step_ms: number | null;
  train_ms: number | null;
  optimizer_ms: number | null;
  /** CPU time of the step over all the side's threads (median): at 1 thread, a measure of work that other load barely moves. */
  cpu_ms: number | null;
  peak_rss_mb: number | null;
  /** Seconds from spawn to the end of the first step. */
  startup_s: number | null;
  /** Cores other processes used while the steps were timed (the highest of the rounds'): above ~0.1 the figures are not quiet-machine figures. */
  other_cores: number | null;
  runtime: string | null;
  error?: string;
}

type Prefixed<T, P extends string> = { [K in keyof T as `${P}${K & string}`]: T[K] };

export interface TrainStepRow extends SideFigures, Partial<Prefixed<SideFigures, 'peer_'>> {
  image_size: number;
  batch: string;
  ep: string;
  threads: number;
  steps: number;
  rounds: number;
  gflop_per_image: number;
  /** 1-minute load average before the config ran: other work on the machine skews every figure. */
  load_avg: number;
  load_avg_after: number;
  /** When the measured artifacts were built: stale ones measure an older compiler (see --rebuild). */
  artifacts_built: string;
  session_create_s: number | null;
  peer?: string;
  peer_gpu_peak_mb?: number;
  /** ours / peer images per second (> 1: we are faster). */
  ratio: number | null;
  /** Lowest and highest ours/peer ratio of single rounds (with --rounds > 1). */
  ratio_min?: number;
  ratio_max?: number;
}

export const TRAIN_STEP_ARGS = {
  imageSize: { type: 'repeated', help: 'image size in pixels; repeat for several configs (default 128 and 256)' },
  batch: { type: 'repeated', help: 'source+target rows, one per --image-size or one for all (default 16+16 at 128 px, 8+8 at 256)' },
  steps: { type: 'int', default: 5, min: 1, help: 'timed steps per side and round' },
  warmup: { type: 'int', default: 2, min: 0, help: 'untimed steps first' },
  threads: { type: 'ints', default: [availableParallelism()], min: 1, help: 'intra-op threads; a list (1,2) adds a scaling table' },
  rounds: { type: 'int', default: 1, min: 1, help: 'runs of both sides, taking turns (ours first in odd rounds)' },
  peer: { type: 'string', default: '', choices: ['', 'torch'], help: 'also run the seed\'s PyTorch model' },
  json: { type: 'flag', help: 'one JSON object per config and thread count' },
  ep: { type: 'string', default: 'cpu', choices: ['cpu', 'cuda', 'webgpu'], help: 'execution provider' },
  python: { type: 'string', default: existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', help: 'python with torch for --peer torch' },
  artifactsRoot: { type: 'string', default: 'artifacts', help: 'where the bench artifacts are built' },
  rebuild: { type: 'flag', help: 'build the artifacts afresh (measures the compiler as it is now)' },
  sessionConfig: { type: 'repeated', help: 'KEY=VALUE ORT session config entry for our side, to compare options (e.g. session.intra_op.allow_spinning=1)' },
  executionMode: { type: 'string', default: '', choices: ['', 'sequential', 'parallel'], help: 'ORT execution mode for our side, to compare' },
  sessionOption: { type: 'repeated', help: 'KEY=JSON top-level ORT session option for our side, to compare (e.g. enableCpuMemArena=false)' },
} satisfies ArgSpec;

function parse(argv: string[]) {
  const a = parseArgs('train-step', argv, TRAIN_STEP_ARGS);
  const sizes = a.imageSize.map(Number);
  const batches = a.batch;
  if (sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new UserError(`--image-size needs a size in pixels such as 128 or 256, got ${a.imageSize.join(', ')}`);
  if (sizes.length === 0 && batches.length > 0) throw new UserError('--batch: give the --image-size it goes with, e.g. --image-size 128 --batch 16+16');
  if (batches.length > 0 && batches.length !== sizes.length && batches.length !== 1) throw new UserError(`--batch: give one per --image-size (got ${sizes.length} sizes and ${batches.length} batches)`);
  const pairs = sizes.length === 0
    ? [{ size: 128, batch: '16+16' }, { size: 256, batch: '8+8' }]
    : sizes.map((size, i) => ({ size, batch: batches[batches.length === 1 ? 0 : i] ?? (size >= 256 ? '8+8' : '16+16') }));
  const configs = pairs.map(({ size, batch }) => ({ size, ...parseBatch(batch) }));
  for (const kv of a.sessionOption) {
    const eq = kv.indexOf('=');
    try {
      if (eq < 1) throw new Error('no =');
      JSON.parse(kv.slice(eq + 1));
    } catch {
      throw new UserError(`--session-option ${kv}: write KEY=JSON, e.g. enableCpuMemArena=false`);
    }
  }
  for (const kv of a.sessionConfig) if (!/^[\w.]+=.*$/.test(kv)) throw new UserError(`--session-config ${kv}: write KEY=VALUE, e.g. session.intra_op.allow_spinning=1`);
  return { ...a, configs, peer: a.peer === 'torch' };
}

/** Modification time of the newest source file that shapes the artifacts' graphs. */
function newestCompilerSource(): number {
  const src = fileURLToPath(new URL('../src/', import.meta.url));
  const times = ['model', 'onnx', 'autodiff'].flatMap((d) => readdirSync(join(src, d), { recursive: true, encoding: 'utf8' })
    .map((f) => statSync(join(src, d, f))).filter((st) => st.isFile()).map((st) => st.mtimeMs));
  return Math.max(0, ...times);
}

/** The artifacts of the default model at this size, built (seeded init) when missing, stale or asked to. */
export async function artifactsFor(root: string, size: number, rebuild = false): Promise<string> {
  const config = makeConfig({ imageSize: size });
  const dir = join(root, `${config.name}-${size}px`);
  const built = join(dir, 'training_model.onnx');
  const present = existsSync(join(dir, 'manifest.json')) && existsSync(built);
  // Artifacts older than the compiler would measure the graphs it made before.
  const stale = present && statSync(built).mtimeMs < newestCompilerSource();
  if (rebuild || !present || stale) {
    console.error(stale ? `rebuilding ${dir}: the compiler (src/model, src/onnx, src/autodiff) changed since it was built …` : `building ${dir} …`);
    mkdirSync(root, { recursive: true });
    await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: join('models', 'weights'), seed: 0 });
  }
  return dir;
}

const FAILED: SideFigures = { images_per_s: null, gflops: null, step_ms: null, train_ms: null, optimizer_ms: null, cpu_ms: null, peak_rss_mb: null, startup_s: null, other_cores: null, runtime: null };

interface Run { startup_s: number; step_s: number[]; train_s: number[]; optimizer_s: number[]; step_cpu_s: number[]; peak_rss_mb: number; other_cores: number | null; runtime: string; raw: Json }

/** Runs one side once; a side that fails is reported (and the other still measured), not thrown. */
async function runSide(run: () => Promise<ChildRun>): Promise<Run | { error: string }> {
  try {
    const { result, startupS } = await run();
    const r = result as Json & Omit<Run, 'startup_s' | 'raw'>;
    return { startup_s: startupS, step_s: r.step_s, train_s: r.train_s, optimizer_s: r.optimizer_s, step_cpu_s: r.step_cpu_s ?? [], peak_rss_mb: r.peak_rss_mb, other_cores: r.other_cores ?? null, runtime: r.runtime, raw: r };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(e.message);
    return { error: e.message };
  }
}

/** A side's figures over all rounds: medians of every timed step; peak RSS and start-up, the median of the rounds'. */
function figures(runs: (Run | { error: string })[], count: number, gflopPerImage: number): SideFigures {
  const ok = runs.filter((r): r is Run => !('error' in r));
  if (ok.length === 0) return { ...FAILED, error: (runs[0] as { error: string }).error };
  const step = median(ok.flatMap((r) => r.step_s));
  return {
    images_per_s: count / step, gflops: (count / step) * gflopPerImage, step_ms: step * 1000,
    train_ms: median(ok.flatMap((r) => r.train_s)) * 1000, optimizer_ms: median(ok.flatMap((r) => r.optimizer_s)) * 1000,
    cpu_ms: ok.every((r) => r.step_cpu_s.length > 0) ? median(ok.flatMap((r) => r.step_cpu_s)) * 1000 : null,
    peak_rss_mb: median(ok.map((r) => r.peak_rss_mb)), startup_s: median(ok.map((r) => r.startup_s)),
    other_cores: ok.every((r) => r.other_cores !== null) ? Math.max(...ok.map((r) => r.other_cores!)) : null, runtime: ok[0].runtime,
  };
}

const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? '–' : v.toFixed(digits));

export async function benchTrainStep(argv: string[]): Promise<TrainStepRow[]> {
  const o = parse(argv);
  // The child runs through tsx rather than this process's flags, which may be a test runner's.
  const oursCommand = ['--import', 'tsx', fileURLToPath(new URL('./index.ts', import.meta.url)), '__train-step-ours'];
  const peerScript = fileURLToPath(new URL('./peer/torch_train_step.py', import.meta.url));
  const ortOptions = [...o.sessionConfig.flatMap((kv) => ['--session-config', kv]), ...o.sessionOption.flatMap((kv) => ['--session-option', kv]), ...(o.executionMode ? ['--execution-mode', o.executionMode] : [])];
  const rows: TrainStepRow[] = [];
  if (!o.json) console.log(`train-step bench: ${o.ep}, ${o.threads.join(', ')} threads, median of ${o.steps} steps after ${o.warmup} warm-up × ${o.rounds} round(s)${o.peer ? ', peer torch, taking turns' : ''}${ortOptions.length ? `, ours with ${ortOptions.join(' ')}` : ''}`);
  for (const c of o.configs) {
    const count = c.nSource + c.nTarget;
    const batch = `${c.nSource}+${c.nTarget}`;
    const dir = await artifactsFor(o.artifactsRoot, c.size, o.rebuild);
    const gflopPerImage = trainGflopPerImage(makeConfig({ imageSize: c.size }), count, c.nSource);
    for (const threads of o.threads) {
      const load = loadavg()[0];
      if (load > 0.5) console.error(`train-step: load average ${load.toFixed(2)} before ${c.size} px, ${threads} threads: other work shares the cores, figures will be low and noisy`);
      const common = ['--steps', String(o.steps), '--warmup', String(o.warmup), '--threads', String(threads)];
      const ours = () => runChild(process.execPath, [...oursCommand, '--dir', dir, '--count', String(count), '--n-source', String(c.nSource), '--ep', o.ep, ...common, ...ortOptions], 'ours');
      const torch = () => runChild(o.python, [peerScript, '--image-size', String(c.size), '--batch', batch, '--device', o.ep === 'cpu' ? 'cpu' : 'cuda', ...common], 'torch');
      const oursRuns: (Run | { error: string })[] = [];
      const peerRuns: (Run | { error: string })[] = [];
      const roundRatios: number[] = [];
      // Each side in its own process, one after the other (never together: they would share the cores);
      // alternating which goes first, so drifting load from other work hits both alike.
      for (let r = 0; r < o.rounds; r++) {
        const pair: [typeof ours, typeof oursRuns][] = [[ours, oursRuns]];
        if (o.peer) pair[r % 2 ? 'unshift' : 'push']([torch, peerRuns]);
        for (const [run, into] of pair) into.push(await runSide(run));
        const [a, b] = [oursRuns.at(-1), peerRuns.at(-1)];
        if (a && b && !('error' in a) && !('error' in b)) roundRatios.push(median(b.step_s) / median(a.step_s));
      }
      const mine = figures(oursRuns, count, gflopPerImage);
      const firstOk = oursRuns.find((r): r is Run => !('error' in r));
      const row: TrainStepRow = {
        image_size: c.size, batch, ep: o.ep, threads, steps: o.steps, rounds: o.rounds, gflop_per_image: gflopPerImage, load_avg: load,
        load_avg_after: loadavg()[0], artifacts_built: statSync(join(dir, 'training_model.onnx')).mtime.toISOString(),
        ...mine, session_create_s: (firstOk?.raw.create_s as number | undefined) ?? null, ratio: null,
      };
      let peer: SideFigures | undefined;
      if (o.peer) {
        peer = figures(peerRuns, count, gflopPerImage);
        Object.assign(row, { peer: 'torch' }, Object.fromEntries(Object.entries(peer).map(([k, v]) => [`peer_${k}`, v])));
        const gpu = peerRuns.find((r): r is Run => !('error' in r))?.raw.gpu_peak_mb;
        if (gpu !== undefined) row.peer_gpu_peak_mb = gpu as number;
        row.ratio = mine.images_per_s !== null && peer.images_per_s !== null ? mine.images_per_s / peer.images_per_s : null;
        if (roundRatios.length > 1) [row.ratio_min, row.ratio_max] = [Math.min(...roundRatios), Math.max(...roundRatios)];
      }
      const busiest = Math.max(mine.other_cores ?? 0, peer?.other_cores ?? 0);
      if (busiest > 0.1) console.error(`train-step: other processes used ${busiest.toFixed(2)} cores while ${c.size} px, ${threads} threads was timed: not a quiet-machine figure`);
      rows.push(row);
      if (o.json) {
        console.log(JSON.stringify(row));
        continue;
      }
      const line = (who: string, f: SideFigures) => f.error
        ? `  ${who.padEnd(6)} failed: ${f.error.split('\n')[0]}`
        : `  ${who.padEnd(6)} ${fmt(f.images_per_s).padStart(7)} img/s ${fmt(f.gflops, 0).padStart(5)} GFLOP/s  step ${fmt(f.step_ms, 0).padStart(5)} ms (fwd+bwd ${fmt(f.train_ms, 0)}, optimizer ${fmt(f.optimizer_ms, 0)}; CPU ${fmt(f.cpu_ms, 0)} ms)  peak RSS ${fmt(f.peak_rss_mb, 0)} MB  start-up ${fmt(f.startup_s, 2)} s  other work ${fmt(f.other_cores, 2)} cores`;
      console.log(`${c.size} px, batch ${batch}, ${threads} threads (${gflopPerImage.toFixed(3)} GFLOP/image, load average ${load.toFixed(2)} before, ${row.load_avg_after.toFixed(2)} after, artifacts built ${row.artifacts_built}):`);
      console.log(line('ours', mine) + (mine.error ? '' : `  (session ${fmt(row.session_create_s, 2)} s)`));
      if (peer) {
        console.log(line('torch', peer));
        console.log(`  ratio ours/torch ${fmt(row.ratio, 2)}×${row.ratio_min === undefined ? '' : ` (rounds ${fmt(row.ratio_min, 2)}–${fmt(row.ratio_max, 2)}×)`}`);
      }
    }
  }
  if (!o.json && o.threads.length > 1) printScaling(rows);
  return rows;
}

/** Per config: images/s at each thread count and the speed-up over the first count, both sides. */
function printScaling(rows: TrainStepRow[]): void {
  console.log('\nthread scaling (speed-up over the first thread count):');
  console.log('| config | threads | ours img/s | ours speed-up | torch img/s | torch speed-up | ours/torch |');
  console.log('|---|---|---|---|---|---|---|');
  for (const key of [...new Set(rows.map((r) => `${r.image_size} px ${r.batch}`))]) {
    const rs = rows.filter((r) => `${r.image_size} px ${r.batch}` === key);
    const up = (v: number | null | undefined, base: number | null | undefined) => (v && base ? `${(v / base).toFixed(2)}×` : '–');
    for (const r of rs) {
      console.log(`| ${key} | ${r.threads} | ${fmt(r.images_per_s, 2)} | ${up(r.images_per_s, rs[0].images_per_s)} | ${fmt(r.peer_images_per_s, 2)} | ${up(r.peer_images_per_s, rs[0].peer_images_per_s)} | ${fmt(r.ratio, 2)}× |`);
    }
  }
}
