import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { syncRunDir } from '../tracking/wandb/sync.ts';

interface SyncArgs {
  'run-dir': string;
  'wandb-entity'?: string;
  'wandb-project'?: string;
}

/** `ort-dann wandb-sync <run-dir>`: uploads W&B runs kept on disk (offline, or cut short by an outage). */
export const wandbSyncCommand: CommandModule<object, SyncArgs> = {
  command: 'wandb-sync <run-dir>',
  describe: 'Upload the W&B runs kept in a run directory (offline runs, or uploads an outage cut short)',
  builder: (y) =>
    y
      .positional('run-dir', { type: 'string', demandOption: true, describe: 'The ort-dann run directory (or one of its wandb/*run-* directories)' })
      .option('wandb-entity', { type: 'string', describe: 'Upload to this entity instead of the one recorded' })
      .option('wandb-project', { type: 'string', describe: 'Upload to this project instead of the one recorded' })
      .example('$0 wandb-sync runs/dann-1', 'Upload the run with the key from WANDB_API_KEY or ~/.netrc'),
  handler: async (args) => {
    const results = await syncRunDir(args['run-dir'], { entity: args['wandb-entity'], project: args['wandb-project'] });
    const unfinished = results.filter((r) => !r.complete);
    if (unfinished.length > 0) {
      throw new UserError(`${unfinished.length} of ${results.length} runs did not finish uploading; run ort-dann wandb-sync ${args['run-dir']} again`);
    }
    for (const r of results) process.stdout.write(`${r.url}\n`);
  },
};
