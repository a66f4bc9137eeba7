import type { CommandModule } from 'yargs';
import { differentiate } from '../autodiff/grad.ts';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { Graph } from '../onnx/graph.ts';
import { encodeModel, readModelFile } from '../onnx/proto.ts';

interface GradArgs { model: string; loss: string; out: string; wrt?: string[] }

export const gradCommand: CommandModule<object, GradArgs> = {
  command: 'grad',
  describe: 'Append the backward pass to an ONNX model: one <initializer>_grad output per float initializer (ai.onnx ops only)',
  builder: (y) => y
    .option('model', { type: 'string', demandOption: true, describe: 'Input ONNX model (e.g. from torch.onnx.export, opset ≥ 13)' })
    .option('loss', { type: 'string', demandOption: true, describe: 'Name of the scalar loss output' })
    .option('out', { type: 'string', demandOption: true, describe: 'Where to write the model with gradients' })
    .option('wrt', { type: 'string', array: true, describe: 'Differentiate only these initializers or inputs (default: every float initializer of rank ≥ 1 except BatchNorm running statistics)' }),
  handler: async (args) => {
    const g = Graph.fromModel(readModelFile(args.model));
    if (!g.info(args.loss) && !g.nodes.some((n) => n.outputs.includes(args.loss))) {
      throw new UserError(`--loss ${args.loss}: ${args.model} has no value of that name; its outputs are ${g.outputs.map((o) => o.name).join(', ')}`);
    }
    // Rank-0 initializers are constants torch folds in (epsilons, exponents), and BatchNorm running
    // statistics (inputs 3 and 4) are buffers: neither is a parameter.
    const buffers = new Set(g.nodes.filter((n) => n.op === 'BatchNormalization').flatMap((n) => n.inputs.slice(3, 5)));
    const floatInits = [...g.initializers].filter(([name, t]) => t.dtype === 'float' && t.dims.length > 0 && !buffers.has(name)).map(([name]) => name);
    const wrt = args.wrt ?? floatInits;
    const grads = differentiate(g, { loss: args.loss, wrt });
    await writeFileAtomic(args.out, encodeModel(g.toModel({ producer: 'ort-dann grad' })));
    process.stdout.write(`wrote ${args.out}: ${grads.size} gradients (${g.nodes.length} nodes)\n`);
  },
};
