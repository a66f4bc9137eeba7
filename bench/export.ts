/**
 * Inference speed of the exported model against the same network exported by torch.onnx.export
 * (opset 17, eval mode, same weights), both run by onnxruntime-node with the same session options:
 *   npm run bench -- export [--image-size 128 --image-size 256] [--batch 32] [--runs 5] [--warmup 2]
 *     [--rounds 2] [--threads N] [--backbone resnet34|resnet18] [--python /usr/bin/python3] [--json]
 *   node --import tsx bench/export.ts [same options]
 * The two models take turns in blocks (one session at a time, so neither's idle thread pool competes
 * with the other's run), `--rounds` times, alternating which goes first; images/s is the median over
 * all timed runs of a model.
 * Both models are checked to compute the same outputs before timing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';
import { UserError } from '../src/errors.ts';
import { exportInferenceModel } from '../src/export/export.ts';
import { Graph } from '../src/onnx/graph.ts';
import { readModelFile } from '../src/onnx/proto.ts';
import { buildArtifacts } from '../src/model/build-artifacts.ts';
import { makeConfig } from '../src/model/config.ts';
import { PY_SAFETENSORS } from '../test/io/python.ts';
import { type ArgSpec, parseArgs } from './lib/args.ts';
import { median } from './lib/stats.ts';

export interface ExportBenchRow {
  image_size: number;
  backbone: string;
  batch: number;
  threads: number;
  /** Timed runs per model (rounds × runs). */
  runs: number;
  ours_images_per_s: number;
  torch_images_per_s: number;
  /** ours / torch (> 1: ours is faster). */
  ratio: number;
  ours_nodes: number;
  torch_nodes: number;
  /** max |ours − torch| / max |torch| over the batch's predictions. */
  max_rel_diff: number;
  /** 1-minute load average before the config ran: other work on the machine skews the figures. */
  load_avg: number;
}

export const EXPORT_ARGS = {
  imageSize: { type: 'ints', default: [128, 256], min: 1, help: 'image sizes in pixels (repeat or 128,256)' },
  batch: { type: 'int', default: 32, min: 1, help: 'images per run' },
  runs: { type: 'int', default: 5, min: 1, help: 'timed runs per model and round' },
  warmup: { type: 'int', default: 2, min: 0, help: 'untimed runs first' },
  rounds: { type: 'int', default: 2, min: 1, help: 'blocks per model, taking turns' },
  threads: { type: 'int', default: availableParallelism(), min: 1, help: 'intra-op threads' },
  backbone: { type: 'string', default: 'resnet34', choices: ['resnet18', 'resnet34'] as const, help: 'backbone' },
  json: { type: 'flag', help: 'one JSON object per size' },
  python: { type: 'string', default: existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3', help: 'python with torch and torchvision, for torch.onnx.export' },
} satisfies ArgSpec;

type Options = ReturnType<typeof parse>;

function parse(argv: string[]) {
  const { imageSize, ...rest } = parseArgs('export', argv, EXPORT_ARGS);
  return { sizes: imageSize, ...rest };
}

interface Timed { seconds: number[]; prediction: Float32Array }

/** Seconds per timed run of `file` on `input`, and its last output. */
async function timeModel(file: string, input: ort.Tensor, o: Options): Promise<Timed> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: o.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    for (let k = 0; k < o.warmup; k++) await session.run({ images: input });
    const seconds: number[] = [];
    let prediction: Float32Array = new Float32Array();
    for (let k = 0; k < o.runs; k++) {
      const t0 = performance.now();
      const out = await session.run({ images: input });
      seconds.push((performance.now() - t0) / 1000);
      prediction = out.prediction.data as Float32Array;
    }
    return { seconds, prediction };
  } finally {
    await session.release();
  }
}

function relDiff(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let k = 0; k < b.length; k++) {
    diff = Math.max(diff, Math.abs(a[k] - b[k]));
    scale = Math.max(scale, Math.abs(b[k]));
  }
  return diff / Math.max(scale, 1e-30);
}

export async function benchExport(argv: string[]): Promise<ExportBenchRow[]> {
  const o = parse(argv);
  const root = await mkdtemp(join(tmpdir(), 'ort-dann-bench-export-'));
  const rows: ExportBenchRow[] = [];
  try {
    const codec = join(root, 'codec.py');
    await writeFile(codec, PY_SAFETENSORS);
    if (!o.json) console.log(`export bench: ${o.backbone}, batch ${o.batch}, ${o.threads} threads, median of ${o.rounds}×${o.runs} runs per model after ${o.warmup} warm-up`);
    for (const size of o.sizes) {
      const dir = join(root, `${size}px`);
      const config = makeConfig({ imageSize: size, backbone: o.backbone });
      const manifest = await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: root, seed: 0 });
      const ours = join(dir, 'ours.onnx');
      const torch = join(dir, 'torch.onnx');
      await exportInferenceModel({ manifest, checkpoint: join(dir, 'checkpoint.safetensors'), out: ours, metadata: { normalization: { kind: 'none' } } });
      const py = spawnSync(o.python, [new URL('../src/export/torch_dann.py', import.meta.url).pathname, 'export', dir, join(dir, 'checkpoint.safetensors'), torch, codec], { encoding: 'utf8' });
      if (py.status !== 0) throw new UserError(`--python ${o.python}: torch.onnx.export failed (${py.error?.message ?? py.stderr.trim().split('\n').at(-1)}); it needs torch and torchvision`);

      const data = new Float32Array(o.batch * 3 * size * size);
      for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 1000;
      const input = new ort.Tensor('float32', data, [o.batch, 3, size, size]);
      const load = loadavg()[0];
      if (load > 0.5) console.error(`export bench: load average ${load.toFixed(2)} before ${size} px: other work shares the cores, figures will be low and noisy`);
      const times = { ours: [] as number[], torch: [] as number[] };
      const perRound: string[] = [];
      let diff = 0;
      for (let round = 0; round < o.rounds; round++) {
        // Alternate which model goes first, so a drift in machine speed does not favour one of them.
        const order = round % 2 === 0 ? (['ours', 'torch'] as const) : (['torch', 'ours'] as const);
        const got: Partial<Record<'ours' | 'torch', Timed>> = {};
        for (const who of order) got[who] = await timeModel(who === 'ours' ? ours : torch, input, o);
        times.ours.push(...got.ours!.seconds);
        times.torch.push(...got.torch!.seconds);
        perRound.push(`${(o.batch / median(got.ours!.seconds)).toFixed(1)}/${(o.batch / median(got.torch!.seconds)).toFixed(1)}`);
        diff = relDiff(got.ours!.prediction, got.torch!.prediction);
      }
      if (!(diff < 1e-3)) throw new Error(`export bench: the two models disagree (relative difference ${diff}); they are not the same network`);
      const nodes = (file: string) => Graph.fromModel(readModelFile(file)).nodes.length;
      const row: ExportBenchRow = {
        image_size: size, backbone: o.backbone, batch: o.batch, threads: o.threads, runs: o.rounds * o.runs,
        ours_images_per_s: o.batch / median(times.ours), torch_images_per_s: o.batch / median(times.torch), ratio: 0,
        ours_nodes: nodes(ours), torch_nodes: nodes(torch), max_rel_diff: diff, load_avg: load,
      };
      row.ratio = row.ours_images_per_s / row.torch_images_per_s;
      rows.push(row);
      if (o.json) console.log(JSON.stringify(row));
      else {
        console.log(`${size} px: ours ${row.ours_images_per_s.toFixed(1)} img/s (${row.ours_nodes} nodes), torch.onnx.export ${row.torch_images_per_s.toFixed(1)} img/s (${row.torch_nodes} nodes), `
          + `ratio ${row.ratio.toFixed(3)}; per round ours/torch img/s ${perRound.join(', ')}; outputs agree to ${diff.toExponential(1)}; load average ${load.toFixed(2)} before`);
      }
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  try {
    await benchExport(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(`bench: ${e.message}`);
    process.exitCode = 1;
  }
}
