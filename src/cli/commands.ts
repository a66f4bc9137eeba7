import type { CommandModule } from 'yargs';

interface CommandEntry {
  name: string;
  load(): Promise<CommandModule<any, any>>;
}

/**
 * Every subcommand of the ort-dann CLI, in the order --help lists them. Modules load on demand: a
 * command pulls in only its own dependencies (ONNX Runtime, sharp, axios…), so a run or an error
 * message does not pay for all of them.
 */
export const commands: CommandEntry[] = [
  { name: 'train', load: async () => (await import('./train.ts')).trainCommand },
  { name: 'lr-find', load: async () => (await import('./train.ts')).lrFindCommand },
  { name: 'build-artifacts', load: async () => (await import('./build-artifacts.ts')).buildArtifactsCommand },
  { name: 'grad', load: async () => (await import('./grad.ts')).gradCommand },
  { name: 'demo-data', load: async () => (await import('./demo-data.ts')).demoDataCommand },
  { name: 'wandb-sync', load: async () => (await import('./wandb-sync.ts')).wandbSyncCommand },
  { name: 'export', load: async () => (await import('./export.ts')).exportCommand },
  { name: 'predict', load: async () => (await import('./predict.ts')).predictCommand },
  { name: 'evaluate', load: async () => (await import('./evaluate.ts')).evaluateCommand },
  { name: 'compare', load: async () => (await import('./compare.ts')).compareCommand },
  { name: 'sweep', load: async () => (await import('./sweep.ts')).sweepCommand },
  { name: 'agent', load: async () => (await import('./agent.ts')).agentCommand },
  { name: 'install-cuda', load: async () => (await import('./install-cuda.ts')).installCudaCommand },
];

/** The modules needed to parse `argv`: the named command's alone, or all of them (help, unknown command). */
export async function commandsFor(argv: string[]): Promise<CommandModule<any, any>[]> {
  const first = argv.find((a) => !a.startsWith('-'));
  const chosen = commands.find((c) => c.name === first);
  return chosen ? [await chosen.load()] : Promise.all(commands.map((c) => c.load()));
}
