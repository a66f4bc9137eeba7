import type { CommandModule } from 'yargs';
import { buildArtifactsCommand } from './build-artifacts.ts';
import { gradCommand } from './grad.ts';
import { trainCommand } from './train.ts';
import { demoDataCommand } from './demo-data.ts';
import { wandbSyncCommand } from './wandb-sync.ts';

/** Every subcommand of the ort-dann CLI, in the order --help lists them. */
export const commands: CommandModule<any, any>[] = [trainCommand, buildArtifactsCommand, gradCommand, demoDataCommand, wandbSyncCommand];
