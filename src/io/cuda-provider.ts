/**
 * Installs ONNX Runtime's CUDA execution provider into onnxruntime-node from the npm registry, for
 * machines that reach npm but not NuGet (where onnxruntime-node's own installer downloads it).
 *
 * The registry package (docs/gpu.md) repackages the same Microsoft.ML.OnnxRuntime.Gpu.Linux files.
 * The provider and the core library must be the same ONNX Runtime version, so the package version
 * is chosen by the ONNX Runtime version it carries, and that version is checked again inside the
 * downloaded provider binary before anything is placed next to the binding's libonnxruntime.so.1.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import axios, { isAxiosError } from 'axios';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from './atomic.ts';
import { downloadOnce } from './download.ts';
import { readTarGz } from './tar.ts';

export const CUDA_PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu';
/** The files onnxruntime-node loads for `--ep cuda`, by their path inside the package. */
const PROVIDER_FILES: Record<string, string> = {
  'package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so': 'libonnxruntime_providers_cuda.so',
  'package/Plugins/Linux/x64/libonnxruntime_providers_shared.so': 'libonnxruntime_providers_shared.so',
};
const CUDA_SO = 'libonnxruntime_providers_cuda.so';
/**
 * ONNX Runtime version of each package version, read from the provider binary's own version string
 * (docs/gpu.md). The registry's metadata states it only in the latest version's README, which is
 * read too, so a newer package is found without a release of ort-dann.
 */
const KNOWN_ORT_VERSIONS: Record<string, string> = { '0.4.9': '1.29.0' };
/** CUDA 13 libraries the provider links (docs/gpu.md). */
export const CUDA_LIBRARIES = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10', 'libcudnn.so.9'];

export interface OrtInstall {
  version: string;
  /** onnxruntime-node's package folder. */
  packageDir: string;
  /** Folder of libonnxruntime.so.1, where the binding looks for providers. */
  bindingDir: string;
}

/** The onnxruntime-node this process loads: its version and binary folder. */
export function installedOrt(): OrtInstall {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('onnxruntime-node/package.json');
  const version = String(JSON.parse(readFileSync(pkgFile, 'utf8')).version);
  const bindingDir = join(dirname(pkgFile), 'bin', 'napi-v6', process.platform, process.arch);
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new UserError(`install-cuda: ONNX Runtime's CUDA provider package is for Linux x64, this is ${process.platform}/${process.arch}; use --ep cpu (or --ep webgpu)`);
  }
  if (!existsSync(join(bindingDir, 'libonnxruntime.so.1'))) {
    throw new UserError(`install-cuda: onnxruntime-node ${version} has no ${join(bindingDir, 'libonnxruntime.so.1')}; reinstall it with \`npm ci\``);
  }
  return { version, packageDir: dirname(pkgFile), bindingDir };
}

export interface ProviderRelease {
  packageVersion: string;
  ortVersion: string;
  tarball: string;
  integrity: string;
}

interface Packument {
  'dist-tags'?: { latest?: string };
  readme?: string;
  versions?: Record<string, { dist?: { tarball?: string; integrity?: string } }>;
}

/** The ONNX Runtime version a package README states (`ONNX Runtime: [1.29.0](…)`). */
export function ortVersionInReadme(readme: string | undefined): string | undefined {
  return /ONNX Runtime:\s*\[?v?(\d+\.\d+\.\d+)/i.exec(readme ?? '')?.[1];
}

const noMatchAdvice = (ortVersion: string, available: string[]) => available.length
  ? `pin onnxruntime-node to ${available.at(-1)} (\`npm i onnxruntime-node@${available.at(-1)}\`) or, on a machine that reaches NuGet, \`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci\``
  : `on a machine that reaches NuGet run \`ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci\` (onnxruntime-node ${ortVersion})`;

/** Finds the registry package version that carries ONNX Runtime `ortVersion`. */
export async function findProviderRelease(registry: string, ortVersion: string): Promise<ProviderRelease> {
  const url = `${registry.replace(/\/+$/, '')}/${CUDA_PROVIDER_PACKAGE}`;
  let doc: Packument;
  try {
    const res = await axios.get<Packument>(url, { timeout: 30_000, validateStatus: () => true, headers: { accept: 'application/json' } });
    if (res.status === 404) throw new UserError(`install-cuda: ${url} does not exist (HTTP 404); pass --registry with an npm registry that mirrors ${CUDA_PROVIDER_PACKAGE}, or --from a downloaded .tgz`);
    if (res.status < 200 || res.status >= 300 || typeof res.data !== 'object') throw new UserError(`install-cuda: ${url} answered HTTP ${res.status}; retry later, or pass --from a downloaded .tgz`);
    doc = res.data;
  } catch (e) {
    if (e instanceof UserError) throw e;
    const reason = isAxiosError(e) ? (e.code ?? e.message) : String(e);
    throw new UserError(`install-cuda: cannot reach ${url} (${reason}); connect to the npm registry (or set --registry), or pass --from a downloaded ${CUDA_PROVIDER_PACKAGE} .tgz`);
  }
  const carried = new Map(Object.entries(KNOWN_ORT_VERSIONS));
  const latest = doc['dist-tags']?.latest;
  const latestOrt = ortVersionInReadme(doc.readme);
  if (latest && latestOrt) carried.set(latest, latestOrt);
  const candidates = [...carried].filter(([v]) => doc.versions?.[v]?.dist?.tarball && doc.versions[v].dist!.integrity);
  const match = candidates.filter(([, ort]) => ort === ortVersion).at(-1);
  if (!match) {
    const available = [...new Set(candidates.map(([, ort]) => ort))].sort();
    throw new UserError(`install-cuda: no ${CUDA_PROVIDER_PACKAGE} on ${registry} carries ONNX Runtime ${ortVersion} (found ${available.join(', ') || 'none'}); ${noMatchAdvice(ortVersion, available)}`);
  }
  const dist = doc.versions![match[0]].dist!;
  return { packageVersion: match[0], ortVersion: match[1], tarball: dist.tarball!, integrity: dist.integrity! };
}

/** Scans a stream for `needle` across chunk boundaries. */
function searcher(needle: Buffer): { feed(chunk: Buffer): void; found(): boolean } {
  let tail = Buffer.alloc(0);
  let hit = false;
  return {
    feed(chunk) {
      if (hit) return;
      const joined = Buffer.concat([tail, chunk]);
      hit = joined.includes(needle);
      tail = joined.subarray(Math.max(0, joined.length - needle.length + 1));
    },
    found: () => hit,
  };
}

/**
 * Places the provider files of the package tarball `tgz` into `bindingDir`, after checking that the
 * provider binary is ONNX Runtime `ortVersion`. Files are staged first: a wrong or broken package
 * leaves the binding as it was.
 */
export async function installProviderFromTarball(tgz: string, ortVersion: string, bindingDir: string): Promise<string[]> {
  const stage = join(bindingDir, `.install-cuda-${process.pid}`);
  await fs.rm(stage, { recursive: true, force: true });
  try {
    await fs.mkdir(stage, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`install-cuda: cannot write into ${bindingDir} (${code}); run it as the user who ran npm ci, or make that folder writable`);
  }
  try {
    const version = searcher(Buffer.from(`\0${ortVersion}\0`));
    const staged: string[] = [];
    for await (const entry of readTarGz(tgz)) {
      const target = PROVIDER_FILES[entry.name];
      if (!target) continue;
      const body = entry.body;
      async function* checked(): AsyncGenerator<Uint8Array> {
        for await (const chunk of body) {
          if (target === CUDA_SO) version.feed(chunk);
          yield chunk;
        }
      }
      await writeFileAtomic(join(stage, target), checked(), { mode: 0o755 });
      staged.push(target);
    }
    const missing = Object.values(PROVIDER_FILES).filter((f) => !staged.includes(f));
    if (missing.length) throw new UserError(`install-cuda: ${tgz} has no ${missing.join(', ')}; it is not a ${CUDA_PROVIDER_PACKAGE} package`);
    if (!version.found()) throw new UserError(`install-cuda: the provider in ${tgz} is not ONNX Runtime ${ortVersion}, the version of the installed onnxruntime-node; use the package that carries ${ortVersion}`);
    for (const f of staged) await fs.rename(join(stage, f), join(bindingDir, f));
    return staged.map((f) => join(bindingDir, f));
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
  }
}

/** Downloads (once, checked against the registry's integrity) the package matching `ort`; returns the .tgz path. */
export async function downloadProviderPackage(registry: string, ort: OrtInstall, onProgress?: (received: number, total: number | undefined) => void): Promise<{ release: ProviderRelease; tgz: string }> {
  const release = await findProviderRelease(registry, ort.version);
  // npm's conventional cache folder for tools, beside the package that uses the download.
  const tgz = join(ort.packageDir, '..', '.cache', 'ort-dann', `${CUDA_PROVIDER_PACKAGE}-${release.packageVersion}.tgz`);
  await downloadOnce(release.tarball, tgz, {
    integrity: release.integrity, onProgress, timeoutMs: 60_000,
    fallback: `or download it yourself and pass --from <file.tgz>`,
  });
  return { release, tgz };
}

/** Downloads and installs the provider matching the installed ONNX Runtime. */
export async function installProviderFromRegistry(registry: string, ort: OrtInstall, onProgress?: (received: number, total: number | undefined) => void): Promise<{ release: ProviderRelease; files: string[] }> {
  const { release, tgz } = await downloadProviderPackage(registry, ort, onProgress);
  return { release, files: await installProviderFromTarball(tgz, ort.version, ort.bindingDir) };
}

/** Whether the provider files sit beside the binding's core library. */
export function cudaProviderInstalled(): boolean {
  if (process.platform !== 'linux' || process.arch !== 'x64') return false;
  return existsSync(join(installedOrt().bindingDir, CUDA_SO));
}

/** The CUDA libraries the dynamic loader cannot find (ldconfig's cache and LD_LIBRARY_PATH). */
export function missingCudaLibraries(env: NodeJS.ProcessEnv = process.env): string[] {
  let cache = '';
  try {
    cache = execFileSync(existsSync('/sbin/ldconfig') ? '/sbin/ldconfig' : 'ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch { /* no ldconfig: LD_LIBRARY_PATH alone decides */ }
  const dirs = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  return CUDA_LIBRARIES.filter((lib) => !cache.includes(`${lib} `) && !dirs.some((d) => existsSync(join(d, lib))));
}
