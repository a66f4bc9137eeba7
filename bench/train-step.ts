/**
 * Train-step throughput of our artifacts (forward, backward, optimizer) against the seed's PyTorch
 * model, side by side in one invocation, same batch and threads:
 *   npm run bench -- train-step [--image-size 128 --batch 16+16]... [--steps 5] [--warmup 2]
 *     [--threads N] [--peer torch] [--json] [--ep cpu|cuda|webgpu] [--python /usr/bin/python3]
 *     [--artifacts-root artifacts] [--rebuild]
 * Several --image-size/--batch pairs may be given (default 128 px 16+16 and 256 px 8+8). Artifacts
 * are built when missing; --rebuild builds them afresh, to measure the compiler as it is now. Each side
 * runs in its own child process, one after the other (never together: they would share the cores).
 * Per config: images/s (median of the timed steps), achieved nominal GFLOP/s, peak RSS, start-up
 * (spawn to the end of the first step); with --peer torch the same for PyTorch and the ratio.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../src/errors.ts';
import { buildArtifacts } from '../src/model/build-artifacts.ts';
import { makeConfig } from '../src/model/config.ts';
import { type ChildRun, type Json, runChild } from './lib/child.ts';
import { trainGflopPerImage } from './lib/flops.ts';

/** One side's figures; all null, with `error` set, when that side failed (e.g. an EP that cannot run the graph). */
interface SideFigures {
  images_per_s: number | null;
  gflops: number | null;
  step_ms: number | null;
  train_ms: number | null;
  optimizer_ms: number | null;
  peak_rss_mb: number | null;
  /** Seconds from spawn to the end of the first step. */
  startup_s: number | null;
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
  gflop_per_image: number;
  /** 1-minute load average before the config ran: other work on the machine skews every figure. */
  load_avg: number;
  /** When the measured artifacts were built: stale ones measure an older compiler (see --rebuild). */
  artifacts_built: string;
  session_create_s: number | null;
  peer?: string;
  peer_gpu_peak_mb?: number;
  /** ours / peer images per second (> 1: we are faster). */
  ratio: number | null;
}

interface Options {
  configs: { size: number; nSource: number; nTarget: number }[];
  steps: number;
  warmup: number;
  threads: number;
  ep: 'cpu' | 'cuda' | 'webgpu';
  peer: boolean;
  json: boolean;
  python: string;
  artifactsRoot: string;
  rebuild: boolean;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function parse(argv: string[]): Options {
  const values = (name: string) => argv.flatMap((a, i) => (a === name ? [argv[i + 1]] : []));
  const one = (name: string, fallback: string) => values(name).at(-1) ?? fallback;
  const count = (name: string, fallback: number, min: number) => {
    const v = Number(one(name, String(fallback)));
    if (!Number.isInteger(v) || v < min) throw new UserError(`${name} needs an integer ≥ ${min}, got ${one(name, '')}`);
    return v;
  };
  const sizes = values('--image-size').map(Number);
  const batches = values('--batch');
  if (sizes.some((s) => !Number.isInteger(s) || s < 1)) throw new UserError(`--image-size needs a size in pixels such as 128 or 256, got ${values('--image-size').join(', ')}`);
  if (sizes.length === 0 && batches.length > 0) throw new UserError('--batch: give the --image-size it goes with, e.g. --image-size 128 --batch 16+16');
  if (batches.length > 0 && batches.length !== sizes.length && batches.length !== 1) throw new UserError(`--batch: give one per --image-size (got ${sizes.length} sizes and ${batches.length} batches)`);
  const pairs = sizes.length === 0
    ? [{ size: 128, batch: '16+16' }, { size: 256, batch: '8+8' }]
    : sizes.map((size, i) => ({ size, batch: batches[batches.length === 1 ? 0 : i] ?? (size >= 256 ? '8+8' : '16+16') }));
  const configs = pairs.map(({ size, batch }) => {
    const m = /^(\d+)\+(\d+)$/.exec(batch ?? '');
    if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new UserError(`--batch ${batch}: write source+target rows, e.g. 16+16`);
    return { size, nSource: Number(m[1]), nTarget: Number(m[2]) };
  });
  const ep = one('--ep', 'cpu');
  if (ep !== 'cpu' && ep !== 'cuda' && ep !== 'webgpu') throw new UserError(`--ep ${ep}: choose cpu, cuda or webgpu`);
  const peer = one('--peer', '');
  if (peer !== '' && peer !== 'torch') throw new UserError(`--peer ${peer}: the only peer is torch`);
  return {
    configs,
    steps: count('--steps', 5, 1),
    warmup: count('--warmup', 2, 0),
    threads: count('--threads', availableParallelism(), 1),
    ep,
    peer: peer === 'torch',
    json: argv.includes('--json'),
    python: one('--python', existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3'),
    artifactsRoot: one('--artifacts-root', 'artifacts'),
    rebuild: argv.includes('--rebuild'),
  };
}

/** The artifacts of the default model at this size, built (seeded init) when missing or asked to. */
export async function artifactsFor(root: string, size: number, rebuild = false): Promise<string> {
  const config = makeConfig({ imageSize: size });
  const dir = join(root, `${config.name}-${size}px`);
  if (rebuild || !existsSync(join(dir, 'manifest.json'))) {
    console.error(`building ${dir} …`);
    mkdirSync(root, { recursive: true });
    await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: join('models', 'weights'), seed: 0 });
  }
  return dir;
}

const FAILED: SideFigures = { images_per_s: null, gflops: null, step_ms: null, train_ms: null, optimizer_ms: null, peak_rss_mb: null, startup_s: null, runtime: null };

/** Runs one side; a side that fails is reported (and the other still measured), not thrown. */
async function measure(run: () => Promise<ChildRun>, count: number, gflopPerImage: number): Promise<SideFigures & { raw: Json }> {
  try {
    const { result, startupS } = await run();
    const r = result as Json & { step_s: number[]; train_s: number[]; optimizer_s: number[]; peak_rss_mb: number; runtime: string };
    const step = median(r.step_s);
    return {
      images_per_s: count / step, gflops: (count / step) * gflopPerImage, step_ms: step * 1000,
      train_ms: median(r.train_s) * 1000, optimizer_ms: median(r.optimizer_s) * 1000,
      peak_rss_mb: r.peak_rss_mb, startup_s: startupS, runtime: r.runtime, raw: r,
    };
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(e.message);
    return { ...FAILED, error: e.message, raw: {} };
  }
}

const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? '–' : v.toFixed(digits));

export async function benchTrainStep(argv: string[]): Promise<TrainStepRow[]> {
  const o = parse(argv);
  // The child runs through tsx rather than this process's flags, which may be a test runner's.
  const oursCommand = ['--import', 'tsx', fileURLToPath(new URL('./index.ts', import.meta.url)), '__train-step-ours'];
  const peerScript = fileURLToPath(new URL('./peer/torch_train_step.py', import.meta.url));
  const rows: TrainStepRow[] = [];
  if (!o.json) console.log(`train-step bench: ${o.ep}, ${o.threads} threads, median of ${o.steps} steps after ${o.warmup} warm-up${o.peer ? ', peer torch' : ''}`);
  for (const c of o.configs) {
    const count = c.nSource + c.nTarget;
    const batch = `${c.nSource}+${c.nTarget}`;
    const dir = await artifactsFor(o.artifactsRoot, c.size, o.rebuild);
    const load = loadavg()[0];
    if (load > 0.5) console.error(`train-step: load average ${load.toFixed(2)} before ${c.size} px: other work shares the cores, figures will be low and noisy`);
    const common = ['--steps', String(o.steps), '--warmup', String(o.warmup), '--threads', String(o.threads)];
    const gflopPerImage = trainGflopPerImage(makeConfig({ imageSize: c.size }), count, c.nSource);
    const { raw, ...ours } = await measure(() => runChild(process.execPath, [...oursCommand, '--dir', dir, '--count', String(count), '--n-source', String(c.nSource), '--ep', o.ep, ...common], 'ours'), count, gflopPerImage);
    const row: TrainStepRow = {
      image_size: c.size, batch, ep: o.ep, threads: o.threads, steps: o.steps, gflop_per_image: gflopPerImage, load_avg: load,
      artifacts_built: statSync(join(dir, 'training_model.onnx')).mtime.toISOString(),
      ...ours, session_create_s: (raw.create_s as number | undefined) ?? null, ratio: null,
    };
    let peer: SideFigures | undefined;
    if (o.peer) {
      const { raw: peerRaw, ...figures } = await measure(() => runChild(o.python, [peerScript, '--image-size', String(c.size), '--batch', batch, '--device', o.ep === 'cpu' ? 'cpu' : 'cuda', ...common], 'torch'), count, gflopPerImage);
      peer = figures;
      Object.assign(row, { peer: 'torch' }, Object.fromEntries(Object.entries(peer).map(([k, v]) => [`peer_${k}`, v])));
      if (peerRaw.gpu_peak_mb !== undefined) row.peer_gpu_peak_mb = peerRaw.gpu_peak_mb as number;
      row.ratio = ours.images_per_s !== null && peer.images_per_s !== null ? ours.images_per_s / peer.images_per_s : null;
    }
    rows.push(row);
    if (o.json) {
      console.log(JSON.stringify(row));
      continue;
    }
    const line = (who: string, f: SideFigures) => f.error
      ? `  ${who.padEnd(6)} failed: ${f.error.split('\n')[0]}`
      : `  ${who.padEnd(6)} ${fmt(f.images_per_s).padStart(7)} img/s ${fmt(f.gflops, 0).padStart(5)} GFLOP/s  step ${fmt(f.step_ms, 0).padStart(5)} ms (fwd+bwd ${fmt(f.train_ms, 0)}, optimizer ${fmt(f.optimizer_ms, 0)})  peak RSS ${fmt(f.peak_rss_mb, 0)} MB  start-up ${fmt(f.startup_s, 2)} s`;
    console.log(`${c.size} px, batch ${batch} (${gflopPerImage.toFixed(3)} GFLOP/image, load average ${load.toFixed(2)} before, artifacts built ${row.artifacts_built}):`);
    console.log(line('ours', ours) + (ours.error ? '' : `  (session ${fmt(row.session_create_s, 2)} s)`));
    if (peer) {
      console.log(line('torch', peer));
      console.log(`  ratio ours/torch ${fmt(row.ratio, 2)}×`);
    }
  }
  return rows;
}
