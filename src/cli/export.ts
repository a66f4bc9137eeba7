import { dirname, join } from 'node:path';
import type { CommandModule } from 'yargs';
import { NORMALIZATION_NAMES, NO_NORMALIZATION, normalizationFromName } from '../data/normalization.ts';
import { loadCheckpoint } from '../export/checkpoint.ts';
import { exportInferenceModel } from '../export/export.ts';
import { guardOutput } from './output-guard.ts';
import { renamedFlag } from './flags.ts';

const NORMALIZATION_FLAG = { type: 'string', choices: [...NORMALIZATION_NAMES], describe: "Normalization the model was trained with (default: as recorded in the checkpoint or the run's model.onnx, else none)" } as const;

interface Args { checkpoint: string; artifacts?: string; out?: string; 'with-domain': boolean; normalization?: string; 'run-id'?: string; force: boolean; 'bn-domain': 'target' | 'source' }

export const exportCommand: CommandModule<object, Args> = {
  command: 'export',
  describe: 'Write the inference ONNX of a trained checkpoint: BatchNorm folded, images -> prediction, preprocessing in its metadata',
  builder: (y) => renamedFlag(y, 'normalize', 'normalization', NORMALIZATION_FLAG)
    .option('checkpoint', { type: 'string', demandOption: true, describe: 'Run directory (runs/<name>: its best, else latest, checkpoint), artifacts folder, or .safetensors file' })
    .option('artifacts', { type: 'string', describe: 'build-artifacts folder whose manifest.json describes the model (default: beside the checkpoint)' })
    .option('out', { type: 'string', describe: 'Model file to write (default: model.onnx in the run or artifacts folder)' })
    .option('with-domain', { type: 'boolean', default: false, describe: 'Also output features [N,F] and domain_logit [N,1]' })
    .option('normalization', NORMALIZATION_FLAG)
    .option('bn-domain', { type: 'string', choices: ['target', 'source'] as const, default: 'target' as const, describe: 'Artifacts with per-domain BatchNorm statistics: whose statistics the model keeps (target: the domain it is deployed on)' })
    .option('run-id', { type: 'string', describe: "Training run id to record (default: as recorded in the checkpoint or the run's model.onnx)" })
    .option('force', { type: 'boolean', default: false, describe: 'Replace an exported model already at --out (never anything else)' }),
  handler: async (args) => {
    const started = Date.now();
    const ckpt = await loadCheckpoint(args.checkpoint, args.artifacts);
    const normalization = args.normalization ? normalizationFromName(args.normalization) : ckpt.normalization ?? NO_NORMALIZATION;
    const out = args.out ?? join(args.artifacts ? dirname(ckpt.file) : ckpt.manifestDir, 'model.onnx');
    guardOutput(out, { flag: '--out', own: ['exported model'], folder: false, force: args.force, example: 'model.onnx' });
    const r = await exportInferenceModel({
      manifest: ckpt.manifest, checkpoint: ckpt.tensors, where: ckpt.file, out, withDomain: args['with-domain'],
      metadata: { normalization, runId: args['run-id'] ?? ckpt.runId, sourceCommit: ckpt.sourceCommit }, targetScaling: ckpt.targetScaling,
      deployDomain: args['bn-domain'],
    });
    const m = r.metadata;
    const source = args.normalization ? '' : ckpt.recordedIn ? ` (as recorded in ${ckpt.recordedIn})` : ' (none recorded with the checkpoint; pass --normalization if training used another)';
    process.stdout.write(`wrote ${out} from ${ckpt.file}: ${m.backbone} at ${m.imageSize} px, outputs ${m.outputs.join(', ')} (${m.outputNames.join(', ')}), `
      + `${r.foldedBatchNorms} BatchNorms folded${ckpt.manifest.config.batchNormStats === 'per-domain' ? ` (${args['bn-domain']} statistics)` : ''}, normalization ${m.normalization.kind}${source}, ${(r.bytes / 1e6).toFixed(1)} MB (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  },
};
