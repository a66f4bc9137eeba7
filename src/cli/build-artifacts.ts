import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { guardOutput } from './output-guard.ts';
import { buildArtifacts } from '../model/build-artifacts.ts';
import { BACKBONES, loadConfigFile, makeConfig } from '../model/config.ts';
import { BATCH_NORM_STATS, type BatchNormStats, type ModelConfig } from '../onnx/manifest.ts';
import { checkRange, checkRanges, RANGES } from './ranges.ts';

interface Args {
  config: string; 'image-size'?: number; backbone?: string; task?: string; outputs?: string[];
  out?: string; weights: string; seed: number; force: boolean; 'bn-stats'?: string;
}

export const defaultArtifactsDir = (name: string, imageSize: number) => join('artifacts', `${name}-${imageSize}px`);

export const buildArtifactsCommand: CommandModule<object, Args> = {
  command: 'build-artifacts',
  describe: 'Compile the DANN model into training, eval and optimizer ONNX models, a checkpoint and manifest.json',
  builder: (y) => y
    .option('config', { type: 'string', default: 'models/resnet34-dann.json', describe: 'Model config (JSON)' })
    .option('image-size', { type: 'number', describe: 'Input size in pixels (overrides the config; 128 and 256 are typical)' })
    .option('backbone', { type: 'string', choices: BACKBONES, describe: 'torchvision body (overrides the config)' })
    .option('task', { type: 'string', choices: ['regression', 'classification'], describe: 'Loss of the label head: MSE or cross-entropy' })
    .option('outputs', { type: 'string', array: true, describe: 'Output names (regression) or class names (classification)' })
    .option('bn-stats', { type: 'string', choices: BATCH_NORM_STATS, describe: "BatchNorm statistics in training: 'per-domain' (default: each domain normalised by its own statistics, the model exported with the target's) or 'combined' (the seed: one set over source and target rows)" })
    .option('out', { type: 'string', describe: 'Artifacts directory (default artifacts/<name>-<size>px)' })
    .option('weights', { type: 'string', default: 'none', describe: "Initial weights: 'none' (seeded init), 'torchvision' (download ImageNet weights once), or a .pth/.safetensors file" })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of the initialisation' })
    .option('force', { type: 'boolean', default: false, describe: 'Replace artifacts already in --out (never anything else)' }),
  handler: async (args) => {
    checkRanges(args, ['image-size', 'seed']);
    const base = loadConfigFile(args.config);
    const imageSize = args['image-size'] ?? base.imageSize;
    if (imageSize === undefined) throw new UserError(`--image-size: ${args.config} sets no imageSize; pass --image-size 256`);
    if (args['image-size'] === undefined) checkRange('image-size', imageSize, RANGES['image-size']);
    const config = makeConfig({
      ...base, imageSize,
      ...(args.backbone ? { backbone: args.backbone as ModelConfig['backbone'] } : {}),
      ...(args['bn-stats'] ? { batchNormStats: args['bn-stats'] as BatchNormStats } : {}),
      ...(args.task ? { task: args.task as 'regression' | 'classification' } : {}),
      ...(args.outputs ? { outputs: args.outputs.flatMap((o) => o.split(',')).filter(Boolean) } : {}),
    });
    const out = args.out ?? defaultArtifactsDir(config.name, config.imageSize);
    guardOutput(out, { flag: '--out', own: ['artifacts folder'], folder: true, force: args.force });
    const started = Date.now();
    const manifest = await buildArtifacts({ config, out, weights: args.weights, weightsCache: join('models', 'weights'), seed: args.seed });
    const count = manifest.parameters.reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
    process.stdout.write(`wrote ${out}: ${config.backbone} at ${config.imageSize} px, ${config.featureDim} features, ${config.batchNormStats} BatchNorm statistics, ${(count / 1e6).toFixed(2)} M parameters, weights ${manifest.weights} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
  },
};
