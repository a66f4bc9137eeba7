import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { GraphqlStatusError, GraphqlUnreachableError, sweepApiFromEnvironment } from '../sweep/api.ts';
import { loadSweepConfig } from '../sweep/config.ts';
import { checkProject, DEFAULT_PROJECT } from '../tracking/wandb/settings.ts';

interface SweepArgs {
  config: string;
  project?: string;
  entity?: string;
}

/** `ort-dann sweep CONFIG.yaml`: checks the sweep YAML against train's flags, creates the sweep on W&B and prints the agent command. */
export const sweepCommand: CommandModule<object, SweepArgs> = {
  command: 'sweep <config>',
  describe: 'Create a W&B hyper-parameter sweep over train flags from a sweep YAML; prints the agent command',
  builder: (y) =>
    y
      .positional('config', { type: 'string', demandOption: true, describe: 'Sweep YAML (method, metric, parameters named as train flags)' })
      .option('project', { type: 'string', describe: 'W&B project (default: $WANDB_PROJECT, the YAML\'s project, or "uncategorized")' })
      .option('entity', { type: 'string', describe: 'W&B entity (default: $WANDB_ENTITY, the YAML\'s entity, or your default entity)' })
      .example('$0 sweep sweep.yaml --project dann', 'then start agents with the printed ort-dann agent command'),
  handler: async (args) => {
    const sweep = loadSweepConfig(args.config);
    const str = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);
    const entity = str(args.entity) ?? str(process.env.WANDB_ENTITY) ?? str(sweep.config.entity) ?? null;
    const project = str(args.project) ?? str(process.env.WANDB_PROJECT) ?? str(sweep.config.project) ?? DEFAULT_PROJECT;
    checkProject(project, args.project ? '--project' : 'the project');
    const api = await sweepApiFromEnvironment('sweep');
    let created;
    try {
      created = await api.upsertSweep(sweep.yaml, entity, project, str(sweep.config.description) ?? null);
    } catch (e) {
      if (e instanceof GraphqlStatusError) {
        if (e.status === 401) throw new UserError(`W&B rejected the API key (${e.message}); set WANDB_API_KEY to a valid key from ${api.opts.appUrl}/authorize`);
        if (e.status === 403 || e.status === 404) throw new UserError(`W&B refused a sweep in ${entity ?? '(your default entity)'}/${project} (${e.message}); check --entity and --project`);
        throw new UserError(`W&B refused the sweep config ${args.config} (${e.message})`);
      }
      if (e instanceof GraphqlUnreachableError) throw new UserError(`cannot reach W&B at ${api.opts.baseUrl} (${e.message}); try again later`);
      throw e;
    } finally {
      api.close();
    }
    for (const w of created.warnings) process.stderr.write(`ort-dann: warning: W&B: ${w}\n`);
    const path = `${created.entity ? `${created.entity}/` : ''}${created.project}/${created.id}`;
    const what = sweep.gridSize !== undefined ? `grid of ${sweep.gridSize} run${sweep.gridSize === 1 ? '' : 's'}` : `${sweep.method} search`;
    const goal = sweep.metric ? `, ${sweep.metric.goal} ${sweep.metric.name}` : '';
    const url = created.entity ? ` ${api.opts.appUrl}/${encodeURIComponent(created.entity)}/${encodeURIComponent(created.project)}/sweeps/${encodeURIComponent(created.id)}` : '';
    process.stdout.write(`created sweep ${created.id} (${what}${goal}):${url}\n`);
    process.stdout.write(`start agents (on any number of machines) with: ort-dann agent ${path}\n`);
  },
};
