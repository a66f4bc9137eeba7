import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { CUDA_PROVIDER_PACKAGE, type OrtInstall, installedOrt, installProviderFromRegistry, installProviderFromTarball, missingCudaLibraries } from '../io/cuda-provider.ts';
import { Graph } from '../onnx/graph.ts';
import { encodeModel } from '../onnx/proto.ts';

interface Args { from?: string; registry: string; probe: boolean }

/** A one-node model (Relu) that the probe opens with the CUDA provider only. */
function probeModel(): Uint8Array {
  const g = new Graph();
  g.inputs = [{ name: 'x', dtype: 'float', shape: [4] }];
  g.outputs = [{ name: 'y', dtype: 'float', shape: [4] }];
  g.nodes = [{ op: 'Relu', domain: '', name: 'relu', inputs: ['x'], outputs: ['y'], attrs: {} }];
  return encodeModel(g.toModel());
}

// Runs in a child: a provider that cannot load its CUDA libraries may abort the process.
const PROBE = `
const ort = require('onnxruntime-node');
ort.InferenceSession.create(process.argv[1], { executionProviders: ['cuda'], extra: { session: { disable_cpu_ep_fallback: '1' } } })
  .then(async (s) => { const r = await s.run({ x: new ort.Tensor('float32', Float32Array.from([-1, 0, 1, 2]), [4]) }); console.log(Array.from(r.y.data).join(',')); })
  .catch((e) => { console.error(String(e.message ?? e).split('\\n')[0]); process.exit(1); });`;

/** Whether a CUDA session starts here; the first line of its error otherwise. */
function probeCuda(ort: OrtInstall): { ok: boolean; detail: string } {
  const dir = mkdtempSync(join(tmpdir(), 'ort-dann-cuda-probe-'));
  try {
    const model = join(dir, 'probe.onnx');
    writeFileSync(model, probeModel());
    const r = spawnSync(process.execPath, ['-e', PROBE, model], { encoding: 'utf8', timeout: 120_000, cwd: ort.packageDir });
    const ok = r.status === 0 && r.stdout.trim() === '0,0,1,2';
    const detail = r.error ? r.error.message : (r.stderr.trim().split('\n').at(-1) || (r.signal ? `killed by ${r.signal}` : r.stdout.trim()));
    return { ok, detail };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const installCudaCommand: CommandModule<object, Args> = {
  command: 'install-cuda',
  describe: `Install ONNX Runtime's CUDA provider into onnxruntime-node from the npm registry (${CUDA_PROVIDER_PACKAGE}), matching the installed ONNX Runtime version`,
  builder: (y) => y
    .option('from', { type: 'string', describe: `A downloaded ${CUDA_PROVIDER_PACKAGE} .tgz to install instead of fetching it` })
    .option('registry', { type: 'string', default: process.env.npm_config_registry || 'https://registry.npmjs.org', describe: 'npm registry to fetch the provider package from' })
    .option('probe', { type: 'boolean', default: true, describe: 'Open a one-node CUDA session afterwards to check the GPU and CUDA libraries (--no-probe skips)' }),
  handler: async (args) => {
    const ort = installedOrt();
    let files: string[];
    if (args.from) {
      files = await installProviderFromTarball(args.from, ort.version, ort.bindingDir).catch((e) => {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new UserError(`--from ${args.from}: file not found; give the path of a downloaded ${CUDA_PROVIDER_PACKAGE} .tgz`);
        throw e;
      });
    } else {
      process.stdout.write(`onnxruntime-node ${ort.version}: looking up ${CUDA_PROVIDER_PACKAGE} on ${args.registry}…\n`);
      let shown = -10;
      const result = await installProviderFromRegistry(args.registry, ort, (received, total) => {
        const pct = total ? Math.floor((100 * received) / total) : -1;
        if (pct >= shown + 10) {
          shown = pct;
          process.stdout.write(`  downloading: ${pct}% of ${((total ?? 0) / 1e6).toFixed(0)} MB\n`);
        }
      });
      files = result.files;
      process.stdout.write(`${CUDA_PROVIDER_PACKAGE}@${result.release.packageVersion} carries ONNX Runtime ${result.release.ortVersion}\n`);
    }
    process.stdout.write(`installed ${files.join(', ')}\n`);
    const missing = missingCudaLibraries();
    if (missing.length) process.stdout.write(`note: the loader does not find ${missing.join(', ')}; put the folder holding the CUDA 13 libraries (e.g. a PyTorch install's nvidia/*/lib) on LD_LIBRARY_PATH\n`);
    if (!args.probe) return;
    const probe = probeCuda(ort);
    process.stdout.write(probe.ok
      ? 'CUDA check: a session on the CUDA provider ran; train with --ep cuda\n'
      : `CUDA check: the provider is installed but no CUDA session starts here (${probe.detail}); --ep cuda needs an NVIDIA GPU, its driver and the CUDA 13 libraries\n`);
  },
};
