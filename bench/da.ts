/**
 * `npm run bench -- da`: outcome parity of DANN, ours against the plain-PyTorch reference loop
 * (tools/reference/whole_run.py). On each synthetic shift (src/data/shifts.ts) and seed, both train
 * source-only and DANN with the same recipe, data and initial weights (their own data order and
 * dropout draws), and report the target MAE summed over the outputs on held-out labelled target
 * images after the last epoch, plus the domain accuracy of the last epochs. See docs/da-parity.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ArraySource, renderSplit, SHIFTS, type LabelledArrays, type Shift } from '../src/data/shifts.ts';
import { type ArgSpec, parseArgs, usage } from './lib/args.ts';
import { UserError } from '../src/errors.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { type Tensor } from '../src/io/tensor.ts';
import { fit } from '../src/training/loop.ts';
import { fineTuneDannPlan } from '../src/training/schedules.ts';
import { TrainingSession } from '../src/training/session.ts';
import { buildArtifacts } from '../src/model/build-artifacts.ts';
import { makeConfig } from '../src/model/config.ts';
import { BATCH_NORM_STATS, type BatchNormStats } from '../src/onnx/manifest.ts';

export interface Recipe {
  epochs: number;
  freeze_epochs: number;
  base_lr: number;
  lr_mult: number;
  pct_start: number;
  div: number;
  moms: [number, number, number];
  lambda_domain: number;
  batch_size: number;
  n_iter: number;
  val_steps: number;
  freeze_to: number;
}

export interface DaRow {
  shift: string;
  /** The recipe variant (see `recipeVariants`); 'default' for the recipe as given. */
  variant: string;
  seed: number;
  impl: 'ours' | 'torch';
  mode: 'source-only' | 'dann';
  /** Target MAE summed over the outputs, last epoch, held-out target images. */
  target_mae: number;
  /** Source validation RMSE over a constant prediction's (the source training mean), averaged over the outputs: below 1 means it learned something. */
  source_rmse_rel: number;
  /** Domain accuracy of every epoch (DANN; source-only has no trained domain classifier). */
  domain_accuracy: number[];
  seconds: number;
}

const DA_ARGS = {
  shifts: { type: 'string', default: 'sprites,cells', help: 'comma-separated shifts' },
  seeds: { type: 'ints', default: [0, 1, 2, 3, 4], min: 0, help: 'seeds (initial weights, data order, dropout)' },
  impl: { type: 'string', default: 'ours,torch', help: 'implementations: ours, torch' },
  modes: { type: 'string', default: 'source-only,dann', help: 'source-only, dann' },
  imageSize: { type: 'int', default: 100, min: 97, help: 'image side in pixels' },
  backbone: { type: 'string', default: 'resnet18', choices: ['resnet18', 'resnet34'], help: 'ResNet body' },
  bnStats: { type: 'string', default: 'per-domain', choices: BATCH_NORM_STATS, help: "BatchNorm statistics, ours and the reference: 'per-domain' (the product default) or 'combined' (the seed)" },
  sourceSize: { type: 'int', default: 160, min: 1, help: 'source training images' },
  valSize: { type: 'int', default: 64, min: 1, help: 'validation images per domain' },
  batch: { type: 'int', default: 8, min: 1, help: 'images per domain in a batch' },
  epochs: { type: 'int', default: 4, min: 1, help: 'epochs' },
  lr: { type: 'number', default: 2e-3, min: 0, help: 'base learning rate' },
  lrMult: { type: 'number', default: 1, min: 0, help: "fine_tune_dann's lr_mult" },
  lambda: { type: 'number', default: 0.1, min: 0, help: 'lambda of the domain loss' },
  moms: { type: 'string', default: '0.95,0.85,0.95', help: "one-cycle momentums" },
  vary: { type: 'string', default: '', help: 'also run the recipe with each of these knobs ×2 and ×½ (lr, lambda, moms: 1 − momentum is scaled) and print how DANN holds up' },
  threads: { type: 'int', default: 2, min: 1, help: 'threads per side' },
  json: { type: 'flag', help: 'one JSON line per run' },
  rows: { type: 'string', default: '', help: 'print the table of the JSON lines that --json runs wrote to this file (e.g. one run per seed), train nothing' },
  out: { type: 'string', default: 'bench/results/da', help: 'folder for data, artifacts and runs' },
} as const satisfies ArgSpec;

const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);

export async function benchDa(argv: string[]): Promise<DaRow[]> {
  if (argv.includes('--help')) {
    console.log(`npm run bench -- da [options]\n${usage(DA_ARGS)}`);
    return [];
  }
  const v = parseArgs('da', argv, DA_ARGS);
  if (v.rows) return tableFromRows(v.rows);
  const shifts = list(v.shifts).map((s) => {
    if (!SHIFTS[s]) throw new UserError(`--shifts ${s}: choose from ${Object.keys(SHIFTS).join(', ')}`);
    return SHIFTS[s];
  });
  const seeds = v.seeds;
  const impls = list(v.impl) as DaRow['impl'][];
  const modes = list(v.modes) as DaRow['mode'][];
  const size = v.imageSize;
  const batch = v.batch;
  const sourceSize = v.sourceSize;
  const valSize = v.valSize;
  const moms = list(v.moms).map(Number) as [number, number, number];
  if (moms.length !== 3 || moms.some((m) => !Number.isFinite(m))) throw new UserError('--moms: give three numbers, e.g. 0.95,0.85,0.95');
  const recipe: Recipe = {
    epochs: v.epochs, freeze_epochs: 0, base_lr: v.lr, lr_mult: v.lrMult, pct_start: 0.3, div: 5, moms,
    lambda_domain: v.lambda, batch_size: batch, n_iter: Math.floor(sourceSize / batch), val_steps: Math.floor(valSize / batch), freeze_to: 1,
  };
  const variants = recipeVariants(recipe, list(v.vary));
  const threads = v.threads;
  const out = resolve(v.out);
  mkdirSync(out, { recursive: true });
  const rows: DaRow[] = [];
  const report = (row: DaRow, variant: Variant, constantTargetMae: number) => {
    rows.push(row);
    const acc = row.domain_accuracy.length ? ` domain_accuracy ${row.domain_accuracy.map((a) => a.toFixed(2)).join(' ')}` : '';
    if (v.json) console.log(JSON.stringify({ ...row, baseline: variant.baseline, backbone: v.backbone, image_size: size, bn_stats: v.bnStats, constant_target_mae: constantTargetMae, recipe: variant.recipe } satisfies JsonRow));
    else console.error(`${row.shift} ${row.variant} seed ${row.seed} ${row.impl} ${row.mode}: target MAE ${row.target_mae.toFixed(3)}${acc} (${row.seconds.toFixed(0)} s)`);
  };
  // One dataset per shift: the seeds vary initial weights, data order and dropout, not the images.
  const datasets = await Promise.all(shifts.map(async (shift) => {
    const data = {
      source: renderSplit(shift, 'source', 'train', sourceSize, size, 0),
      target: renderSplit(shift, 'target', 'train', sourceSize, size, 0),
      sourceVal: renderSplit(shift, 'source', 'val', valSize, size, 0),
      targetVal: renderSplit(shift, 'target', 'test', valSize, size, 0),
    };
    const file = join(out, `${shift.name}-${size}px.safetensors`);
    if (impls.includes('torch')) await writeData(file, data, size, shift.outputs.length);
    return { shift, data, file, constant: constantBaseline(data, shift.outputs.length) };
  }));
  // Seeds outermost: a bench stopped early still holds whole seeds of every shift.
  for (const seed of seeds) {
    for (const { shift, data, file, constant } of datasets) {
      const art = join(out, `artifacts-${v.backbone}-${v.bnStats}-${shift.name}-${size}px-seed${seed}`);
      if (!existsSync(join(art, 'manifest.json'))) {
        const config = makeConfig({ imageSize: size, backbone: v.backbone as 'resnet18', outputs: [...shift.outputs], batchNormStats: v.bnStats as BatchNormStats });
        await buildArtifacts({ config, out: art, weights: 'none', weightsCache: out, seed });
      }
      for (const variant of variants) {
        // A variant that only changes lambda trains source-only exactly as its baseline does.
        for (const mode of modes.filter((m) => m === 'dann' || variant.baseline === variant.name)) {
          for (const impl of impls) {
            const t0 = performance.now();
            const r = variant.recipe;
            const epochs = impl === 'ours' ? await runOurs(art, shift, data, r, mode, seed, threads) : runTorch(art, file, r, mode, seed, threads, out);
            report({ shift: shift.name, variant: variant.name, seed, impl, mode, ...summarize(epochs, shift.outputs, mode, constant.sourceRmse), seconds: (performance.now() - t0) / 1000 }, variant, constant.targetMae);
          }
        }
      }
    }
  }
  if (!v.json) {
    const constants = new Map(datasets.map((d) => [d.shift.name, d.constant.targetMae]));
    if (variants.length > 1) printSensitivity(rows, new Map(variants.map((x) => [x.name, x.baseline])), constants);
    else printTable(rows, recipe, size, `${v.backbone} (${v.bnStats} BatchNorm statistics)`, constants);
  }
  return rows;
}

/** A recipe to run; `baseline` names the variant whose source-only runs DANN is judged against. */
export interface Variant {
  name: string;
  recipe: Recipe;
  baseline: string;
}

const KNOBS = ['lr', 'lambda', 'moms'] as const;

/**
 * The recipe and, for each knob, the recipe with that knob ×2 and ×½. Momentum is scaled through
 * 1 − β1 (0.95 → 0.9 doubles it), since β1 itself cannot double. A lambda variant trains source-only
 * exactly like the recipe, so it is judged against the recipe's source-only runs.
 */
export function recipeVariants(recipe: Recipe, knobs: string[]): Variant[] {
  const variants: Variant[] = [{ name: 'default', recipe, baseline: 'default' }];
  for (const knob of knobs) {
    if (!(KNOBS as readonly string[]).includes(knob)) throw new UserError(`--vary ${knob}: choose from ${KNOBS.join(', ')}`);
    for (const [label, f] of [['×2', 2], ['×½', 0.5]] as const) {
      const name = `${knob} ${label}`;
      const r = knob === 'lr' ? { ...recipe, base_lr: recipe.base_lr * f }
        : knob === 'lambda' ? { ...recipe, lambda_domain: recipe.lambda_domain * f }
        : { ...recipe, moms: recipe.moms.map((m) => 1 - (1 - m) * f) as Recipe['moms'] };
      if (r.moms.some((m) => m < 0)) throw new UserError(`--vary moms: doubling 1 − momentum of ${recipe.moms.join(',')} goes below 0; give --moms closer to 1`);
      variants.push({ name, recipe: r, baseline: knob === 'lambda' ? 'default' : name });
    }
  }
  return variants;
}

/** A --json line: the row and what the table needs to say how it was made. */
interface JsonRow extends DaRow {
  baseline: string;
  backbone: string;
  image_size: number;
  bn_stats: string;
  constant_target_mae: number;
  recipe: Recipe;
}

function tableFromRows(file: string): DaRow[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new UserError(`--rows ${file}: cannot read it; give the file that \`npm run bench -- da --json\` output went to`);
  }
  // Other lines (npm's banner, progress) are skipped; only the bench's JSON rows count.
  // Rows written before variants existed are the recipe as given.
  const rows = text.split('\n').filter((l) => l.startsWith('{"shift"')).map((l) => ({ variant: 'default', baseline: 'default', ...JSON.parse(l) }) as JsonRow);
  if (rows.length === 0) throw new UserError(`--rows ${file}: no JSON rows in it; write them with \`npm run bench -- da --json > ${file}\``);
  const first = rows[0];
  const constants = new Map(rows.map((x) => [x.shift, x.constant_target_mae]));
  // One setup per variant: the same backbone, size and statistics throughout, one recipe per variant.
  const setups = new Set(rows.map((x) => JSON.stringify([x.variant, x.baseline, x.backbone, x.image_size, x.bn_stats, x.recipe])));
  const variants = new Set(rows.map((x) => x.variant));
  const common = new Set(rows.map((x) => JSON.stringify([x.backbone, x.image_size, x.bn_stats])));
  if (setups.size > variants.size || common.size > 1) throw new UserError(`--rows ${file}: rows of different setups (backbone, size, BatchNorm statistics, or two recipes under one variant name); give one setup per file`);
  if (variants.size > 1) {
    printSensitivity(rows, new Map(rows.map((x) => [x.variant, x.baseline])), constants);
    return rows;
  }
  printTable(rows, first.recipe, first.image_size, `${first.backbone} (${first.bn_stats} BatchNorm statistics)`, constants);
  return rows;
}

async function writeData(file: string, d: Record<'source' | 'target' | 'sourceVal' | 'targetVal', LabelledArrays>, size: number, k: number): Promise<void> {
  const t = (a: LabelledArrays): [Tensor, Tensor] => [
    { dtype: 'F32', shape: [a.count, 3, size, size], data: a.images }, { dtype: 'F32', shape: [a.count, k], data: a.labels },
  ];
  const [si, sl] = t(d.source);
  const [ti] = t(d.target);
  const [svi, svl] = t(d.sourceVal);
  const [tvi, tvl] = t(d.targetVal);
  await writeSafetensors(file, new Map([['source_images', si], ['source_labels', sl], ['target_images', ti], ['source_val_images', svi], ['source_val_labels', svl], ['target_val_images', tvi], ['target_val_labels', tvl]]));
}

/** A constant prediction at the source training mean: its source validation RMSE per output and its summed target MAE. */
function constantBaseline(d: Record<'source' | 'sourceVal' | 'targetVal', LabelledArrays>, k: number): { sourceRmse: number[]; targetMae: number } {
  const means = Array.from({ length: k }, (_, o) => d.source.labels.filter((_, i) => i % k === o).reduce((a, b) => a + b, 0) / d.source.count);
  const column = (a: LabelledArrays, o: number) => Array.from(a.labels.filter((_, i) => i % k === o));
  return {
    sourceRmse: means.map((m, o) => Math.sqrt(mean(column(d.sourceVal, o).map((y) => (y - m) ** 2)))),
    targetMae: means.reduce((s, m, o) => s + mean(column(d.targetVal, o).map((y) => Math.abs(y - m))), 0),
  };
}

function summarize(epochs: Record<string, number>[], outputs: readonly string[], mode: DaRow['mode'], constantRmse: number[]): Pick<DaRow, 'target_mae' | 'source_rmse_rel' | 'domain_accuracy'> {
  const last = epochs[epochs.length - 1];
  return {
    target_mae: outputs.reduce((s, o) => s + last[`target_mae_${o}`], 0),
    source_rmse_rel: mean(outputs.map((o, k) => last[`rmse_${o}`] / constantRmse[k])),
    domain_accuracy: mode === 'dann' ? epochs.map((e) => e.domain_accuracy) : [],
  };
}

async function runOurs(art: string, shift: Shift, d: Record<'source' | 'target' | 'sourceVal' | 'targetVal', LabelledArrays>, r: Recipe, mode: DaRow['mode'], seed: number, threads: number): Promise<Record<string, number>[]> {
  const outputNames = [...shift.outputs];
  const session = await TrainingSession.fromArtifacts(art, { threads, seed });
  const epochs: Record<string, number>[] = [];
  try {
    const plan = fineTuneDannPlan({ epochs: r.epochs, freezeEpochs: r.freeze_epochs, baseLr: r.base_lr, lrMult: r.lr_mult, pctStart: r.pct_start, div: r.div, moms: r.moms, nGroups: session.groupCount, nIter: r.n_iter });
    await fit({
      session, plan, batchSize: r.batch_size, valSteps: r.val_steps, lambdaDomain: r.lambda_domain,
      source: new ArraySource('source', d.source, { seed, outputNames }),
      target: mode === 'dann' ? new ArraySource('target', d.target, { seed, labelled: false }) : undefined,
      sourceVal: new ArraySource('source-val', d.sourceVal, { seed, shuffle: false, outputNames }),
      targetVal: new ArraySource('target-test', d.targetVal, { seed, shuffle: false }),
      callbacks: [{ name: 'record', afterValidate: (s) => { epochs.push({ ...s.metrics! }); } }],
    });
  } finally {
    await session.release();
  }
  return epochs;
}

function runTorch(art: string, dataFile: string, r: Recipe, mode: DaRow['mode'], seed: number, threads: number, out: string): Record<string, number>[] {
  const spec = join(out, 'spec.json');
  writeFileSync(spec, JSON.stringify({ artifacts: art, data: dataFile, recipe: { ...r, domain: mode === 'dann' }, dtype: 'float32', threads, seed, order: 'shuffle' }));
  const python = process.env.PYTHON ?? '/usr/bin/python3';
  const script = join(import.meta.dirname, '../tools/reference/whole_run.py');
  const p = spawnSync(python, [script, spec, join(out, 'torch-final.safetensors')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (p.error || p.status !== 0) throw new UserError(`torch reference failed: ${p.error?.message ?? p.stderr.trim().split('\n').pop()}; it needs ${python} with torch and torchvision (apt-get install python3-torch python3-torchvision)`);
  return (JSON.parse(p.stdout) as { epochs: Record<string, number>[] }).epochs;
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const sd = (v: number[]) => Math.sqrt(v.reduce((a, b) => a + (b - mean(v)) ** 2, 0) / Math.max(1, v.length - 1));

/** Max − min of the domain accuracy over a run's last three epochs. */
const spreadOf = (x: DaRow) => { const last = x.domain_accuracy.slice(-3); return Math.max(...last) - Math.min(...last); };

function printTable(rows: DaRow[], r: Recipe, size: number, backbone: string, constantTargetMae: Map<string, number>): void {
  console.log(`\nDA outcome: ${backbone} ${size} px, ${r.n_iter * r.batch_size} source + target images, batch ${r.batch_size}+${r.batch_size}, ${r.epochs} epochs, lr ${r.base_lr / 2} (lr_mult ${r.lr_mult}), lambda ${r.lambda_domain}, moms ${r.moms.join('/')}`);
  console.log(`target MAE summed over outputs, last epoch (lower is better); a constant prediction at the source mean scores ${[...constantTargetMae].map(([s, m]) => `${m.toFixed(3)} (${s})`).join(', ')}\n`);
  const seeds = [...new Set(rows.map((x) => x.seed))];
  console.log(`| shift | impl | mode | ${seeds.map((s) => `seed ${s}`).join(' | ')} | mean ± sd | DANN wins | source RMSE / constant's | domain accuracy spread, mean / worst |`);
  console.log(`|---|---|---|${seeds.map(() => '---|').join('')}---|---|---|---|`);
  for (const shift of [...new Set(rows.map((x) => x.shift))]) {
    for (const impl of [...new Set(rows.map((x) => x.impl))]) {
      for (const mode of ['source-only', 'dann'] as const) {
        const sel = seeds.map((s) => rows.find((x) => x.shift === shift && x.impl === impl && x.mode === mode && x.seed === s));
        if (sel.every((x) => !x)) continue;
        const done = sel.filter((x): x is DaRow => !!x);
        const vals = done.map((x) => x.target_mae);
        const spreads = done.filter((x) => x.domain_accuracy.length >= 2).map(spreadOf);
        const baseline = rows.some((x) => x.shift === shift && x.impl === impl && x.mode === 'source-only');
        const wins = mode === 'dann' && baseline ? seeds.filter((s) => {
          const d = rows.find((x) => x.shift === shift && x.impl === impl && x.mode === 'dann' && x.seed === s);
          const b = rows.find((x) => x.shift === shift && x.impl === impl && x.mode === 'source-only' && x.seed === s);
          return d && b && d.target_mae < b.target_mae;
        }).length : undefined;
        console.log(`| ${shift} | ${impl} | ${mode} | ${sel.map((x) => (x ? x.target_mae.toFixed(3) : '—')).join(' | ')} | ${mean(vals).toFixed(3)} ± ${sd(vals).toFixed(3)} | ${wins === undefined ? '' : `${wins}/${seeds.length}`} | ${mean(done.map((x) => x.source_rmse_rel)).toFixed(2)} | ${spreads.length ? `${mean(spreads).toFixed(2)} / ${Math.max(...spreads).toFixed(2)}` : ''} |`);
      }
    }
  }
  const dann = rows.filter((x) => x.mode === 'dann' && x.domain_accuracy.length >= 2);
  if (dann.length) {
    const spread = dann.map(spreadOf);
    console.log(`\ndomain accuracy, spread (max − min) over the last 3 epochs of each DANN run: mean ${mean(spread).toFixed(2)}, worst ${Math.max(...spread).toFixed(2)}`);
  }
}

/**
 * One line per variant, shift and implementation: DANN's target MAE over the seeds, how many seeds it
 * beat its baseline's source-only run, and how far the domain accuracy moved in its last epochs.
 */
export function printSensitivity(rows: DaRow[], baselines: Map<string, string>, constantTargetMae: Map<string, number>): void {
  const seeds = [...new Set(rows.map((x) => x.seed))];
  console.log(`\nDA sensitivity: target MAE summed over outputs, last epoch, seeds ${seeds.join(',')}; a constant prediction at the source mean scores ${[...constantTargetMae].map(([s, m]) => `${m.toFixed(3)} (${s})`).join(', ')}\n`);
  console.log('| variant | shift | impl | source-only mean ± sd | DANN mean ± sd | DANN worst | DANN wins | domain accuracy spread, mean / worst |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const variant of [...new Set(rows.map((x) => x.variant))]) {
    const baseline = baselines.get(variant) ?? variant;
    for (const shift of [...new Set(rows.map((x) => x.shift))]) {
      for (const impl of [...new Set(rows.map((x) => x.impl))]) {
        const pick = (v: string, mode: DaRow['mode'], seed: number) => rows.find((x) => x.variant === v && x.shift === shift && x.impl === impl && x.mode === mode && x.seed === seed);
        const dann = seeds.map((s) => pick(variant, 'dann', s)).filter((x): x is DaRow => !!x);
        if (dann.length === 0) continue;
        const so = seeds.map((s) => pick(baseline, 'source-only', s)).filter((x): x is DaRow => !!x);
        const paired = dann.flatMap((d) => so.filter((b) => b.seed === d.seed).map((b) => [d, b] as const));
        const wins = paired.filter(([d, b]) => d.target_mae < b.target_mae).length;
        const vals = dann.map((x) => x.target_mae);
        const spreads = dann.filter((x) => x.domain_accuracy.length >= 2).map(spreadOf);
        const stat = (v: number[]) => (v.length ? `${mean(v).toFixed(3)} ± ${sd(v).toFixed(3)}` : '—');
        console.log(`| ${variant} | ${shift} | ${impl} | ${stat(so.map((x) => x.target_mae))} | ${stat(vals)} | ${Math.max(...vals).toFixed(3)} | ${paired.length ? `${wins}/${paired.length}` : ''} | ${spreads.length ? `${mean(spreads).toFixed(2)} / ${Math.max(...spreads).toFixed(2)}` : ''} |`);
      }
    }
  }
}
