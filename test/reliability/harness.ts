/**
 * Shared machinery of the reliability tests and of write-errors-doc.ts: a tiny fixture (128 px ResNet18
 * artifacts, a few demo images, optionally a finished previous run and a fake W&B server), the CLI run
 * as a subprocess, file fingerprints to prove nothing was modified, and the path placeholders that make
 * messages stable enough to be written to docs/errors.md.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateDemoData, type DemoData } from '../../src/data/index.ts';
import { readSafetensors } from '../../src/io/safetensors.ts';
import { buildArtifacts } from '../../src/model/build-artifacts.ts';
import { makeConfig } from '../../src/model/config.ts';
import { FakeWandb } from '../helpers/fake-wandb.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(REPO, 'bin', 'ort-dann.js');
export const PRELOAD_ENOSPC = fileURLToPath(new URL('./enospc-preload.mjs', import.meta.url));
export const PRELOAD_FS_FAULT = fileURLToPath(new URL('./fs-fault-preload.mjs', import.meta.url));

export interface Fixture {
  /** Everything lives under here; removed by close(). */
  root: string;
  artifacts: string;
  demo: DemoData;
  /** Working directory of every subprocess, so nothing lands in the repository. */
  cwd: string;
  /** An empty HOME: no ~/.netrc key leaks in from the machine running the tests. */
  home: string;
  /** A finished earlier run (latest/, best/, model.onnx), when asked for. */
  prevRun?: string;
  wandb?: FakeWandb;
  close(): Promise<void>;
}

export interface FixtureOptions {
  prefix: string;
  prevRun?: boolean;
  wandb?: boolean;
}

/** The flags of a working tiny train run on the fixture (one step, one validation batch). */
export function trainBase(f: Fixture, runDir: string): string[] {
  return [
    'train', '--artifacts', f.artifacts, '--source', f.demo.sourceVal!, '--source-val', f.demo.sourceVal!,
    '--target', f.demo.targetTrain, '--target-val', f.demo.targetVal, '--target-labels', f.demo.targetValLabels,
    '--batch-size', '2', '--source-size', '2', '--val-size', '2', '--epochs', '1', '--freeze-epochs', '0',
    '--threads', '2', '--wandb', 'disabled', '--run-dir', runDir,
  ];
}

export async function buildFixture(o: FixtureOptions): Promise<Fixture> {
  // realpath: macOS-style symlinked tmp dirs would otherwise escape the placeholder substitution.
  const root = realpathSync(mkdtempSync(join(tmpdir(), o.prefix)));
  const artifacts = join(root, 'artifacts');
  const cwd = join(root, 'cwd');
  const home = join(root, 'home');
  mkdirSync(cwd);
  mkdirSync(home);
  await buildArtifacts({ config: makeConfig({ imageSize: 128, backbone: 'resnet18' }), out: artifacts, weights: 'none', weightsCache: root, seed: 3 });
  const demo = await generateDemoData({ out: join(root, 'demo'), size: 128, train: 8, val: 4, sourceVal: 8, seed: 1 });
  const f: Fixture = {
    root, artifacts, demo, cwd, home,
    async close() {
      await f.wandb?.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    if (o.wandb) f.wandb = await FakeWandb.start();
    if (o.prevRun) {
      f.prevRun = join(root, 'prev-run');
      const r = await runCli(f, trainBase(f, f.prevRun));
      if (r.code !== 0) throw new Error(`fixture: the previous run failed: ${r.stderr}`);
    }
  } catch (e) {
    await f.close();
    throw e;
  }
  return f;
}

/** The environment of a subprocess: no W&B settings or test hooks from the outside, an empty HOME. */
export function cleanEnv(f: Fixture, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(WANDB_|ORT_DANN_)/.test(k)) env[k] = v;
  return { ...env, HOME: f.home, ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Extra node flags before the script (e.g. --import of a fault-injecting preload). */
  nodeArgs?: string[];
  /** Called once the process is started (to send it signals). */
  onSpawn?: (child: import('node:child_process').ChildProcess) => void;
  timeoutMs?: number;
}

/**
 * Runs `ort-dann <args>` as a subprocess. Asynchronous on purpose: the fake W&B server lives in this
 * process and must keep answering while the CLI runs.
 */
export function runCli(f: Fixture, args: string[], o: RunOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(o.nodeArgs ?? []), BIN, ...args], { cwd: f.cwd, env: cleanEnv(f, o.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 300_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    o.onSpawn?.(child);
  });
}

/** A TCP port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function walk(dir: string): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  // A run directory's .lock exists only while a command runs in it (src/io/run-lock.ts).
  return entries.filter((e) => e.name !== '.lock').flatMap((e) => (e.isDirectory() ? [`${join(dir, e.name)}/`, ...walk(join(dir, e.name))] : [join(dir, e.name)])).sort();
}

/**
 * Every file and folder under `dirs` with size, inode, mtime and ctime: any write, rename, truncation or
 * new file changes it. Cheap enough to take around every case (the checkpoints are ~190 MB).
 */
export function statFingerprint(dirs: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const dir of dirs) {
    for (const p of walk(dir)) {
      // lstat: a case's input may be a symbolic link loop.
      const s = lstatSync(p, { bigint: true });
      out.set(p, p.endsWith('/') ? 'dir' : `${s.size}:${s.ino}:${s.mtimeNs}:${s.ctimeNs}`);
    }
  }
  return out;
}

/** Content hashes of every file under `dirs` (for before/after checks around a whole suite or one fault). */
export function contentHashes(dirs: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const dir of dirs) {
    for (const p of walk(dir)) out.set(p, p.endsWith('/') ? 'dir' : lstatSync(p).isSymbolicLink() ? `link ${readlinkSync(p)}` : createHash('sha256').update(readFileSync(p)).digest('hex'));
  }
  return out;
}

/** Names the entries that differ between two fingerprints ('' when equal). */
export function diffFingerprints(before: Map<string, string>, after: Map<string, string>, root: string): string {
  const changed: string[] = [];
  for (const [p, v] of before) if (after.get(p) !== v) changed.push(`${after.has(p) ? 'modified' : 'deleted'} ${relative(root, p)}`);
  for (const p of after.keys()) if (!before.has(p)) changed.push(`created ${relative(root, p)}`);
  return changed.join(', ');
}

/** The float tensors of a checkpoint's model.safetensors, by name. */
export async function checkpointParams(dir: string): Promise<Map<string, Float32Array>> {
  const { tensors } = await readSafetensors(join(dir, 'model.safetensors'));
  return new Map([...tensors].filter(([, t]) => t.dtype === 'F32').map(([k, t]) => [k, t.data as Float32Array]));
}

/** The trainer state stored in a checkpoint's optimizer.safetensors (step, best, data positions). */
export async function trainerState(dir: string): Promise<Record<string, unknown>> {
  const { metadata } = await readSafetensors(join(dir, 'optimizer.safetensors'));
  return JSON.parse(metadata.trainer ?? '{}') as Record<string, unknown>;
}

/** A JavaScript stack frame line as node prints them. */
export const STACK_FRAME = /^\s+at .+(\(.*:\d+:\d+\)|:\d+:\d+)$/m;
