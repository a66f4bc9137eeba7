/** Shared set-up for tracking tests: temp run directories and a tracking session wired to the fake server. */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createTracking, type Tracking, type TrackingOptions } from '../../src/tracking/index.ts';
import { TEST_KEY, type FakeWandb } from '../helpers/fake-wandb.ts';
import { FAST, ManualClock } from './script.ts';

export const CONFIG = { lr: 2e-3, epochs: 3, model: { arch: 'resnet34', outputs: ['num_particles', 'planer_dist', 'depth_dist'] }, manifest_version: 1, lambda: NaN };

export async function tempDir(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ort-dann-tracking-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface Session {
  tracking: Tracking;
  clock: ManualClock;
  logs: string[];
  stdout: PassThrough;
  modelPath: string;
}

/** A tracking session against the fake (online unless `mode` says otherwise), console captured from a private stream. */
export async function session(fake: FakeWandb | undefined, runDir: string, extra: Partial<TrackingOptions> = {}): Promise<Session> {
  const logs: string[] = [];
  const clock = new ManualClock();
  const stdout = new PassThrough();
  stdout.resume();
  const modelPath = join(runDir, 'model.onnx');
  await writeFile(modelPath, Buffer.from('fake onnx model bytes'));
  const tracking = await createTracking({
    runDir,
    mode: 'online',
    project: 'dann',
    name: 'scripted',
    tags: ['test'],
    config: CONFIG,
    baseUrl: fake?.url ?? 'http://127.0.0.1:9',
    apiKey: TEST_KEY,
    env: {},
    homeDir: runDir,
    clock,
    timing: FAST,
    nvidiaSmi: false,
    captureConsole: { stdout, stderr: stdout },
    histogramEvery: 10,
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(`WARN ${m}`) },
    ...extra,
  });
  return { tracking, clock, logs, stdout, modelPath };
}

/** Every file under `dir`, recursively, as text. */
export async function allFiles(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) {
      const p = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
      out.set(p, await readFile(p, 'utf8'));
    }
  }
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
