/**
 * `npm run bench -- <train-step | profile | graph-ab | data | export | adam | da> [options]`: one entry point for the benches.
 * Each bench is imported only when chosen, so a machine that runs one (e.g. the GPU check, which
 * carries no sharp) needs only that one's dependencies.
 */
import { UserError } from '../src/errors.ts';

const USAGE = `usage: npm run bench -- <command> [options]
  train-step  train-step throughput vs PyTorch: [--image-size 128 --batch 16+16]... [--steps 5] [--warmup 2]
              [--threads 1,2] [--rounds N] [--peer torch] [--json] [--ep cpu|cuda|webgpu] [--rebuild]
              [--session-config KEY=VALUE]... [--execution-mode parallel]
  profile     per-node ORT profile of the train step at several thread counts: [--threads 1,2] [--image-size 128] [--batch 16+16]
  graph-ab    two builds of the training graph, taking turns in one process: --a DIR --b DIR [--threads 2] [--batch 16+16] [--pairs 8]
  data        data-pipeline throughput (simulator, folder decode) vs a training step's consumption
  export      exported inference model vs torch.onnx.export, both run by ORT
  adam        fastai Adam step over 25.76 M parameters, scalar vs SIMD kernel, calling thread and workers [--repeats N]
  da          DANN outcome parity on synthetic shifts, ours vs the PyTorch reference loop (--help)
  (each command lists its options when given an unknown one)`;

async function main(command: string | undefined, argv: string[]): Promise<void> {
  switch (command) {
    case 'train-step': {
      const rows = await (await import('./train-step.ts')).benchTrainStep(argv);
      if (rows.some((r) => r.error !== undefined || r.peer_error !== undefined)) process.exitCode = 1;
      return;
    }
    case '__train-step-ours': // our side of train-step, in its own process (bench/lib/child.ts)
      await (await import('./lib/ours.ts')).oursTrainStep(argv);
      return;
    case 'profile':
      await (await import('./profile.ts')).benchProfile(argv);
      return;
    case 'graph-ab':
      await (await import('./graph-ab.ts')).benchGraphAb(argv);
      return;
    case 'data':
      await (await import('./data.ts')).benchData(argv);
      return;
    case 'export':
      await (await import('./export.ts')).benchExport(argv);
      return;
    case 'adam':
      await (await import('./adam.ts')).benchAdam(argv);
      return;
    case 'da':
      await (await import('./da.ts')).benchDa(argv);
      return;
    default:
      console.error(USAGE);
      process.exitCode = command === undefined || command === '--help' ? 0 : 2;
  }
}

try {
  await main(process.argv[2], process.argv.slice(3));
} catch (e) {
  if (!(e instanceof UserError)) throw e;
  console.error(`bench: ${e.message}`);
  process.exitCode = 1;
}
