import type { CommandModule } from 'yargs';
import { buildArtifactsCommand } from './build-artifacts.ts';
import { compareCommand } from './compare.ts';
import { gradCommand } from './grad.ts';
import { lrFindCommand, trainCommand } from './train.ts';
import { demoDataCommand } from './demo-data.ts';
import { wandbSyncCommand } from './wandb-sync.ts';
import { exportCommand } from './export.ts';
import { predictCommand } from './predict.ts';
import { evaluateCommand } from './evaluate.ts';

/** Every subcommand of the ort-dann CLI, in the order --help lists them. */
export const commands: CommandModule<any, any>[] = [trainCommand, lrFindCommand, buildArtifactsCommand, gradCommand, demoDataCommand, wandbSyncCommand, exportCommand, predictCommand, evaluateCommand, compareCommand];
