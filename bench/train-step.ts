/**
 * Train-step throughput of our artifacts (forward, backward, optimizer) against the seed's PyTorch
 * model, side by side in one invocation, same batch and threads:
 *   npm run bench -- train-step [--image-size 128 --batch 16+16]... [--steps 5] [--warmup 2]
 *     [--threads N] [--peer torch] [--json] [--ep cpu|cuda|webgpu] [--python /usr/bin/python3]
 *     [--artifacts-root artifacts]
 * Several --image-size/--batch pairs may be given (default 128 px 16+16 and 256 px 8+8). Each side
 * runs in its own child process, one after the other (never together: they would share the cores).
 * Per config: images/s (median of the timed steps), achieved nominal GFLOP/s, peak RSS, start-up
 * (spawn to the end of the first step); with --peer torch the same for PyTorch and the ratio.
 */
import { existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../src/errors.ts';
import { buildArtifacts } from '../tools/build-artifacts.ts';
import { makeConfig } from '../tools/model/config.ts';
import { type ChildRun, type Json, runChild } from './lib/child.ts';
import { trainGflopPerImage } from './lib/flops.ts';

export interface TrainStepRow {
  image_size: number;
  batch: string;
  ep: string;
  threads: number;
  steps: number;
  images_per_s: number;
  gflops: number;
  gflop_per_image: number;
  step_ms: number;
  train_ms: number;
  optimizer_ms: number;
  peak_rss_mb: number;
  startup_s: number;
  session_create_s: number;
  runtime: string;
  /** 1-minute load average before the config ran: other work on the machine skews every figure. */
  load_avg: number;
  peer?: string;
  peer_images_per_s: number | null;
  peer_gflops: number | null;
  peer_step_ms: number | null;
  peer_train_ms: number | null;
  peer_optimizer_ms: number | null;
  peer_peak_rss_mb: number | null;
  peer_gpu_peak_mb?: number;
  peer_startup_s: number | null;
  peer_runtime?: string;
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
  };
}

/** The artifacts of the default model at this size, built once (seeded init) when missing. */
export async function artifactsFor(root: string, size: number): Promise<string> {
  const config = makeConfig({ imageSize: size });
  const dir = join(root, `${config.name}-${size}px`);
  if (!existsSync(join(dir, 'manifest.json'))) {
    console.error(`building ${dir} …`);
    await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: join('models', 'weights'), seed: 0 });
  }
  return dir;
}

function summarize(run: ChildRun, count: number) {
  const r = run.result as Json & { step_s: number[]; train_s: number[]; optimizer_s: number[]; peak_rss_mb: number; runtime: string };
  const step = median(r.step_s);
  return {
    imagesPerS: count / step, stepMs: step * 1000, trainMs: median(r.train_s) * 1000, optimizerMs: median(r.optimizer_s) * 1000,
    peakRssMb: r.peak_rss_mb, startupS: run.startupS, runtime: r.runtime, raw: r,
  };
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
    const dir = await artifactsFor(o.artifactsRoot, c.size);
    const load = loadavg()[0];
    if (load > 0.5) console.error(`train-step: load average ${load.toFixed(2)} before ${c.size} px: other work shares the cores, figures will be low and noisy`);
    const common = ['--steps', String(o.steps), '--warmup', String(o.warmup), '--threads', String(o.threads)];
    const ours = summarize(await runChild(process.execPath, [...oursCommand, '--dir', dir, '--count', String(count), '--n-source', String(c.nSource), '--ep', o.ep, ...common], 'ours'), count);
    const peer = o.peer
      ? summarize(await runChild(o.python, [peerScript, '--image-size', String(c.size), '--batch', batch, '--device', o.ep === 'cpu' ? 'cpu' : 'cuda', ...common], 'torch'), count)
      : undefined;
    const gflopPerImage = trainGflopPerImage(makeConfig({ imageSize: c.size }), count, c.nSource);
    const row: TrainStepRow = {
      image_size: c.size, batch, ep: o.ep, threads: o.threads, steps: o.steps,
      images_per_s: ours.imagesPerS, gflops: ours.imagesPerS * gflopPerImage, gflop_per_image: gflopPerImage,
      step_ms: ours.stepMs, train_ms: ours.trainMs, optimizer_ms: ours.optimizerMs,
      peak_rss_mb: ours.peakRssMb, startup_s: ours.startupS, session_create_s: ours.raw.create_s as number, runtime: ours.runtime, load_avg: load,
      ...(peer ? { peer: 'torch', peer_runtime: peer.runtime } : {}),
      peer_images_per_s: peer?.imagesPerS ?? null,
      peer_gflops: peer ? peer.imagesPerS * gflopPerImage : null,
      peer_step_ms: peer?.stepMs ?? null, peer_train_ms: peer?.trainMs ?? null, peer_optimizer_ms: peer?.optimizerMs ?? null,
      peer_peak_rss_mb: peer?.peakRssMb ?? null,
      ...(peer?.raw.gpu_peak_mb !== undefined ? { peer_gpu_peak_mb: peer.raw.gpu_peak_mb as number } : {}),
      peer_startup_s: peer?.startupS ?? null,
      ratio: peer ? ours.imagesPerS / peer.imagesPerS : null,
    };
    rows.push(row);
    if (o.json) {
      console.log(JSON.stringify(row));
      continue;
    }
    const line = (who: string, ips: number | null, gf: number | null, ms: number | null, tr: number | null, op: number | null, rss: number | null, st: number | null) =>
      `  ${who.padEnd(6)} ${fmt(ips).padStart(7)} img/s ${fmt(gf, 0).padStart(5)} GFLOP/s  step ${fmt(ms, 0).padStart(5)} ms (fwd+bwd ${fmt(tr, 0)}, optimizer ${fmt(op, 0)})  peak RSS ${fmt(rss, 0)} MB  start-up ${fmt(st, 2)} s`;
    console.log(`${c.size} px, batch ${batch} (${gflopPerImage.toFixed(3)} GFLOP/image, load average ${load.toFixed(2)} before):`);
    console.log(line('ours', row.images_per_s, row.gflops, row.step_ms, row.train_ms, row.optimizer_ms, row.peak_rss_mb, row.startup_s) + `  (session ${fmt(row.session_create_s, 2)} s)`);
    if (peer) {
      console.log(line('torch', row.peer_images_per_s, row.peer_gflops, row.peer_step_ms, row.peer_train_ms, row.peer_optimizer_ms, row.peer_peak_rss_mb, row.peer_startup_s));
      console.log(`  ratio ours/torch ${fmt(row.ratio, 2)}×`);
    }
  }
  return rows;
}
