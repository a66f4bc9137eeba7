/**
 * Two builds of the training graph, timed against each other in one process:
 *   npm run bench -- graph-ab --a DIR --b DIR [--threads 2] [--batch 16+16] [--pairs 8] [--warmup 2] [--json]
 * DIR is an artifacts folder (build-artifacts), e.g. one built by the compiler before a change and one
 * after. Both sessions stay open and take turns on the same batch (a, b, then b, a, …), so the host's
 * drift, which moves a whole run by 10–30 % on the VM of bench/README.md, falls on both alike; each pair
 * gives one ratio b/a. Only the forward and backward run (the graph is what differs); no optimizer.
 */
import { UserError } from '../src/errors.ts';
import { createRng } from '../src/rng.ts';
import { dannTrainStep } from '../src/training/dann-step.ts';
import { TrainingSession } from '../src/training/session.ts';
import { type ArgSpec, parseArgs, parseBatch } from './lib/args.ts';
import { syntheticBatch } from './lib/batch.ts';
import { median } from './lib/stats.ts';

export const GRAPH_AB_ARGS = {
  a: { type: 'string', default: '', help: 'artifacts folder of the baseline graph' },
  b: { type: 'string', default: '', help: 'artifacts folder of the graph to compare' },
  threads: { type: 'int', default: 2, min: 1, help: 'intra-op threads of both sessions' },
  batch: { type: 'string', default: '16+16', help: 'source+target rows' },
  pairs: { type: 'int', default: 8, min: 1, help: 'timed pairs of steps' },
  warmup: { type: 'int', default: 2, min: 0, help: 'untimed pairs first' },
  json: { type: 'flag', help: 'print the result as JSON' },
} satisfies ArgSpec;

export interface GraphAbResult {
  threads: number;
  batch: string;
  a_ms: number[];
  b_ms: number[];
  /** b/a per pair. */
  ratios: number[];
  median_a_ms: number;
  median_b_ms: number;
  median_ratio: number;
  /** Pairs in which b was faster. */
  b_faster: number;
}

export async function benchGraphAb(argv: string[]): Promise<GraphAbResult> {
  const o = parseArgs('graph-ab', argv, GRAPH_AB_ARGS);
  if (!o.a || !o.b) throw new UserError('graph-ab: give both --a DIR and --b DIR (artifacts folders from build-artifacts)');
  const { nSource, nTarget } = parseBatch(o.batch);
  const open = (dir: string) => TrainingSession.fromArtifacts(dir, { threads: o.threads, adamWorkers: 0 });
  const a = await open(o.a);
  try {
    const b = await open(o.b);
    try {
      const [ca, cb] = [a.manifest.config, b.manifest.config];
      if (ca.imageSize !== cb.imageSize || ca.outputs.length !== cb.outputs.length) {
        throw new UserError(`--b ${o.b} takes ${cb.imageSize} px images and ${cb.outputs.length} outputs, --a ${o.a} ${ca.imageSize} px and ${ca.outputs.length}; compare builds of the same model`);
      }
      const batch = syntheticBatch(createRng(0).fork('bench'), { count: nSource + nTarget, nSource, imageSize: ca.imageSize, outputs: ca.outputs.length });
      const step = async (s: TrainingSession) => {
        s.lazyResetGrad();
        const t = performance.now();
        await dannTrainStep(s, batch, { alpha: 0.5, lambdaDomain: 0.1 });
        return performance.now() - t;
      };
      const result: GraphAbResult = { threads: o.threads, batch: o.batch, a_ms: [], b_ms: [], ratios: [], median_a_ms: 0, median_b_ms: 0, median_ratio: 0, b_faster: 0 };
      for (let p = 0; p < o.warmup + o.pairs; p++) {
        // Alternate which goes first, so a trend within a pair cancels over pairs.
        let ta: number;
        let tb: number;
        if (p % 2 === 0) {
          ta = await step(a);
          tb = await step(b);
        } else {
          tb = await step(b);
          ta = await step(a);
        }
        if (p < o.warmup) continue;
        result.a_ms.push(ta);
        result.b_ms.push(tb);
        result.ratios.push(tb / ta);
      }
      result.median_a_ms = median(result.a_ms);
      result.median_b_ms = median(result.b_ms);
      result.median_ratio = median(result.ratios);
      result.b_faster = result.ratios.filter((r) => r < 1).length;
      if (o.json) console.log(JSON.stringify(result));
      else {
        console.log(`graph-ab: ${o.batch} batch, ${o.threads} threads, ${o.pairs} pairs after ${o.warmup} warm-up`);
        console.log(`  a ${o.a}: median ${result.median_a_ms.toFixed(0)} ms per train step`);
        console.log(`  b ${o.b}: median ${result.median_b_ms.toFixed(0)} ms per train step`);
        const [lo, hi] = [Math.min(...result.ratios), Math.max(...result.ratios)];
        console.log(`  b/a per pair: median ${result.median_ratio.toFixed(3)} (${lo.toFixed(3)}–${hi.toFixed(3)}); b faster in ${result.b_faster} of ${o.pairs} pairs`);
      }
      return result;
    } finally {
      await b.release();
    }
  } finally {
    await a.release();
  }
}
