import { fileURLToPath } from 'node:url';
import type { CommandModule } from 'yargs';
import { UserError } from '../errors.ts';
import { runAgent } from '../sweep/agent.ts';
import { parseSweepPath, sweepApiFromEnvironment } from '../sweep/api.ts';

interface AgentArgs {
  sweep: string;
  count?: number;
  'heartbeat-seconds': number;
}

/** `ort-dann agent ENTITY/PROJECT/SWEEP_ID`: a W&B sweep agent that trains each handed-out parameter set as its own run. */
export const agentCommand: CommandModule<object, AgentArgs> = {
  command: 'agent <sweep>',
  describe: 'Run a W&B sweep agent: trains each parameter set the sweep hands out, as a run of the sweep',
  builder: (y) =>
    y
      .positional('sweep', { type: 'string', demandOption: true, describe: 'ENTITY/PROJECT/SWEEP_ID as ort-dann sweep prints it (or PROJECT/SWEEP_ID, SWEEP_ID)' })
      .option('count', { type: 'number', describe: 'Stop after this many runs (default: until the sweep ends)' })
      .option('heartbeat-seconds', { type: 'number', default: 5, describe: 'Seconds between heartbeats to the sweep controller' })
      .example('$0 agent alice/dann/abc123 --count 4', 'train four runs of sweep abc123, then stop'),
  handler: async (args) => {
    if (args.count !== undefined && !(Number.isInteger(args.count) && args.count > 0)) throw new UserError(`--count ${args.count}: must be a positive integer`);
    if (!(args['heartbeat-seconds'] > 0)) throw new UserError(`--heartbeat-seconds ${args['heartbeat-seconds']}: must be a positive number`);
    const { entity, project, id } = parseSweepPath(args.sweep);
    const api = await sweepApiFromEnvironment('agent');
    try {
      // Runs without a sweep `command` use this very ort-dann.
      const bin = fileURLToPath(new URL('../../bin/ort-dann.js', import.meta.url));
      const code = await runAgent({ api, entity, project, sweepId: id, count: args.count, trainCommand: [process.execPath, bin, 'train'], pollMs: args['heartbeat-seconds'] * 1000 });
      if (code !== 0) process.exitCode = code;
    } finally {
      api.close();
    }
  },
};
