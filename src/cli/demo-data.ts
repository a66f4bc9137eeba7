import type { CommandModule } from 'yargs';
import { generateDemoData } from '../data/demo.ts';
import { guardOutput } from './output-guard.ts';
import { demoDataDir } from './flags.ts';
import { checkRanges } from './ranges.ts';

interface DemoDataArgs { out?: string; size: number; train: number; val: number; 'source-val': number; seed: number; force: boolean }

export const demoDataCommand: CommandModule<object, DemoDataArgs> = {
  command: 'demo-data',
  describe: 'Write the built-in domain-shift demo: particle images through a different microscope (target train/val, labels kept apart for evaluation) and a labelled source-val folder',
  builder: (y) => y
    .option('out', { type: 'string', describe: 'Folder to write (default: data/demo-<size>px, where train and compare look for it; an earlier demo there is replaced only with --force)' })
    .option('size', { type: 'number', default: 128, describe: 'Image side in pixels' })
    .option('train', { type: 'number', default: 1000, describe: 'Target training images' })
    .option('val', { type: 'number', default: 250, describe: 'Target validation images' })
    .option('source-val', { type: 'number', default: 250, describe: 'Labelled source-domain validation images (0 = none)' })
    .option('seed', { type: 'number', default: 0, describe: 'Seed of the demo scenes and noise' })
    .option('force', { type: 'boolean', default: false, describe: 'Replace demo data already in --out (never anything else)' }),
  handler: async (args) => {
    checkRanges(args, ['size', 'train', 'val', 'source-val', 'seed']);
    const out = args.out ?? demoDataDir(args.size);
    guardOutput(out, { flag: '--out', own: ['demo data folder'], folder: true, force: args.force });
    const d = await generateDemoData({ out, size: args.size, train: args.train, val: args.val, sourceVal: args['source-val'], seed: args.seed });
    const lines = [
      `wrote ${d.out} in ${d.seconds.toFixed(1)} s:`,
      `  ${d.targetTrain}/images (${args.train} unlabelled target images; labels for evaluation in ${d.targetTrainLabels})`,
      `  ${d.targetVal}/images (${args.val}; labels in ${d.targetValLabels})`,
    ];
    if (d.sourceVal) lines.push(`  ${d.sourceVal} (${args['source-val']} labelled source-domain images with labels.csv)`);
    process.stdout.write(`${lines.join('\n')}\n`);
  },
};
