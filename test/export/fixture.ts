// Shared setup of the export tests: small artifacts (resnet18 at 128 px) whose checkpoint has
// random BatchNorm statistics and affine parameters — with the initial ones (mean 0, var 1, γ 1, β 0)
// folding would be nearly the identity and prove little — plus exported models and a CLI runner.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { type Normalization } from '../../src/data/normalization.ts';
import { exportInferenceModel, type ExportResult } from '../../src/export/export.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { type Tensor } from '../../src/io/tensor.ts';
import { type Manifest } from '../../src/onnx/manifest.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { randn, rng } from '../helpers/gradcheck.ts';

export const REPO = join(import.meta.dirname, '..', '..');

export interface Fixture {
  artifacts: string;
  manifest: Manifest;
  /** The randomized checkpoint, beside the manifest. */
  checkpoint: string;
  weights: Map<string, Tensor>;
}

export async function makeFixture(dir: string, opts: { task?: 'regression' | 'classification'; seed?: number } = {}): Promise<Fixture> {
  const task = opts.task ?? 'regression';
  const config = makeConfig({ imageSize: 128, backbone: 'resnet18', task, ...(task === 'classification' ? { outputs: ['cat', 'dog', 'owl', 'yak'] } : {}) });
  const manifest = await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: dir, seed: opts.seed ?? 3 });
  const weights = (await readSafetensors(join(dir, 'checkpoint.safetensors'))).tensors;
  const rand = rng(opts.seed ?? 3);
  const set = (name: string, values: (k: number) => number) => {
    const t = weights.get(name)!;
    weights.set(name, { ...t, data: Float32Array.from({ length: t.data.length }, (_, k) => values(k)) });
  };
  for (const b of manifest.buffers.filter((x) => x.name.endsWith('.running_mean'))) {
    const bn = b.name.slice(0, -'.running_mean'.length);
    const c = b.shape[0];
    const noise = randn(2 * c, rand);
    set(`${bn}.running_mean`, (k) => 0.2 * noise[k]);
    set(`${bn}.running_var`, (k) => 0.5 + 1.5 * rand());
    set(`${bn}.weight`, (k) => 0.6 + 0.8 * rand());
    set(`${bn}.bias`, (k) => 0.1 * noise[c + k]);
    // Per-domain statistics: the target's (what export folds) equal to the source's (what the eval model reads for source rows).
    if (weights.has(`${bn}.target_running_mean`)) {
      weights.set(`${bn}.target_running_mean`, weights.get(`${bn}.running_mean`)!);
      weights.set(`${bn}.target_running_var`, weights.get(`${bn}.running_var`)!);
    }
  }
  const checkpoint = join(dir, 'random.safetensors');
  await writeSafetensors(checkpoint, weights);
  return { artifacts: dir, manifest, checkpoint, weights };
}

export function exportFixture(f: Fixture, out: string, opts: { withDomain?: boolean; normalization?: Normalization; runId?: string } = {}): Promise<ExportResult> {
  return exportInferenceModel({
    manifest: f.manifest, checkpoint: f.weights, out, withDomain: opts.withDomain,
    metadata: { normalization: opts.normalization ?? { kind: 'none' }, runId: opts.runId },
  });
}

/** max |got − want| / max |want|: the error relative to the output's scale. */
export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let diff = 0;
  let scale = 0;
  for (let k = 0; k < want.length; k++) {
    diff = Math.max(diff, Math.abs(got[k] - want[k]));
    scale = Math.max(scale, Math.abs(want[k]));
  }
  return diff / Math.max(scale, 1e-30);
}

/** Runs a model file with onnxruntime-node on `feeds`; returns every output's data. */
export async function runOrt(file: string, feeds: Record<string, ort.Tensor>): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2 });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

export interface CliResult { status: number | null; stdout: string; stderr: string }

/** `node bin/ort-dann.js ...args` in `cwd` (default the repo), as a user runs it. */
export function runCli(args: string[], cwd = REPO): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO, 'bin', 'ort-dann.js'), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
