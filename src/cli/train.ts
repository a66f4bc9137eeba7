/**
 * `ort-dann train`: wires data, artifacts, TrainingSession, the fit loop, W&B and export together.
 * With no data flags it runs the built-in demo (128 px artifacts, generated demo domain shift).
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CommandModule, Options } from 'yargs';
import pino from 'pino';
import { checkBatchFits, ensureDemoData, normalizationFromName, openSource, openTarget, type Normalization, NORMALIZATION_NAMES } from '../data/index.ts';
import { UserError } from '../errors.ts';
import { CHECKPOINT_META } from '../export/checkpoint.ts';
import { exportInferenceModel } from '../export/export.ts';
import { quietRuntimeLog } from '../export/runtime.ts';
import { readManifest } from '../onnx/manifest.ts';
import { createTracking } from '../tracking/index.ts';
import { lrFind, plotLrFind } from '../training/lr-find.ts';
import { DomainAccuracySpread, EarlyStopping, NanPolicy, type ResumeState, SaveCheckpoints } from '../training/callbacks.ts';
import { combineBatches, dannTrainStep } from '../training/dann-step.ts';
import { fit, validationFor } from '../training/loop.ts';
import { EpochProgress } from '../training/progress.ts';
import { Recorder } from '../training/recorder.ts';
import { fineTuneDannPlan } from '../training/schedules.ts';
import { type ExecutionProvider, TrainingSession } from '../training/session.ts';
import type { BatchSource } from '../training/types.ts';
import { readTargetScaling, standardize, TARGET_SCALING_META, targetScalingOf, type TargetScaling } from '../training/standardize.ts';
import { buildArtifacts } from '../model/build-artifacts.ts';
import { makeConfig } from '../model/config.ts';
import { recoverAtomicDir, writeFileAtomic } from '../io/atomic.ts';
import { defaultArtifactsDir } from './build-artifacts.ts';
import { demoDataDir, trackingOptionsFromArgs, wandbFlags, without } from './flags.ts';
import { applySweepEnvironment } from '../sweep/run-env.ts';
import { acquireRunLock } from '../io/run-lock.ts';
import { pathKind } from './output-guard.ts';
import { checkRanges } from './ranges.ts';
import { describeReplan, restoreRunArgs, saveRunArgs } from './run-args.ts';

const warn = (m: string) => process.stderr.write(`ort-dann: warning: ${m}\n`);

const num = (describe: string, extra: Partial<Options> = {}): Options => ({ type: 'number', describe, ...extra });

export const trainFlags = {
  artifacts: { type: 'string', describe: 'Artifacts directory from build-artifacts (default: built on demand for --image-size)' },
  'image-size': num('Image size when artifacts are built on demand (default 256, or 128 for the demo)'),
  'run-dir': { type: 'string', describe: 'Run directory (default runs/<run-name>)' },
  'run-name': { type: 'string', describe: 'Run name (default: a timestamp)' },
  epochs: num('Epochs after unfreezing (fine_tune_dann epochs; default 100, or 2 for the demo)'),
  'freeze-epochs': num('Epochs with the ResNet body frozen first (BatchNorm stays trainable)', { default: 1 }),
  'batch-size': num('Images per domain in each batch (the seed\'s batch_size; default 32, or 8 for the demo)'),
  'source-size': num('Source samples per epoch (the seed\'s source_data_size; default 1000, or 160 for the demo)'),
  'val-size': num('Validation samples per domain (the seed\'s validation_data_size; default 1000, or 64 for the demo)'),
  lr: { type: 'string', default: '2e-3', describe: "Base learning rate of fine_tune_dann, or 'auto' to run lr_find first" },
  'lr-mult': num('Ratio of the head to the body learning rate after unfreezing', { default: 100 }),
  'lambda-domain': num('Weight of the domain loss', { default: 0.1 }),
  domain: { type: 'boolean', default: true, describe: 'Train with the domain classifier and GRL; --no-domain trains the source-only baseline' },
  'standardize-targets': { type: 'boolean', default: true, describe: "Regression loss on (y − mean)/std of the source training labels, reported and exported in original units; --no-standardize-targets trains the seed's raw MSE (a resumed run keeps its own choice)" },
  monitor: { type: 'string', default: 'valid_loss', describe: 'Metric that picks the best checkpoint (e.g. valid_loss; dev: source validation loss reweighted by the domain classifier, an estimate of target error without target labels, DANN runs only; target_rmse_num_particles uses target labels)' },
  'monitor-mode': { type: 'string', choices: ['min', 'max', 'auto'], default: 'auto', describe: 'Whether lower or higher is better (auto: the metric\'s own direction)' },
  patience: num('Stop once --monitor has not improved for this many epochs (early stopping; default: never)'),
  seed: num('Seed of data order, simulator and dropout masks', { default: 0 }),
  resume: { type: 'boolean', default: false, describe: 'Continue the run in --run-dir from its latest checkpoint' },
  ep: { type: 'string', choices: ['cpu', 'cuda', 'webgpu'], default: 'cpu', describe: 'ONNX Runtime execution provider' },
  threads: num('Intra-op threads (default: all cores)'),
  source: { type: 'string', default: 'particles', describe: "Labelled source: 'particles', a folder (images/ + labels.csv) or a simulator module (.mjs; runs its code)" },
  'source-val': { type: 'string', describe: 'Labelled validation source (default: the --source simulator on its validation stream)' },
  target: { type: 'string', describe: 'Folder of unlabelled target-domain images' },
  'target-val': { type: 'string', describe: 'Folder of target validation images' },
  'target-labels': { type: 'string', describe: 'CSV of --target-val labels, used only for evaluation (target_rmse_*)' },
  normalization: { type: 'string', choices: [...NORMALIZATION_NAMES], default: 'none', describe: 'Input normalisation, recorded for export and predict' },
  'skip-bad-images': { type: 'boolean', default: false, describe: 'Skip unreadable target images with a warning instead of stopping' },
  'on-nan': { type: 'string', choices: ['stop', 'skip'], default: 'stop', describe: 'On a NaN/Inf loss or gradient: stop (keeping the last checkpoint) or skip the batch' },
  'sim-workers': num('Worker threads for simulator sources (default: 1)'),
  'lr-find-batches': num('Batches lr_find runs at most (fastai num_it; --lr auto and lr-find)', { default: 100 }),
  'source-timeout': num('Seconds one sample of a --source module may take before the run stops with an error', { default: 60 }),
  ...wandbFlags,
  wandb: { ...wandbFlags.wandb, alias: 'wandb-mode' },
} as const satisfies Record<string, Options>;

type Args = Record<string, unknown> & { [K in keyof typeof trainFlags]?: unknown };

function positive(name: string, value: unknown, integer = true): number {
  const v = Number(value);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) throw new UserError(`--${name} ${value}: must be a positive ${integer ? 'integer' : 'number'}`);
  return v;
}

interface Resolved {
  demo: boolean;
  imageSize: number;
  epochs: number;
  freezeEpochs: number;
  batchSize: number;
  sourceSize: number;
  valSize: number;
  runName: string;
  runDir: string;
  normalization: Normalization;
}

export function resolveArgs(a: Args): Resolved {
  checkRanges(a, ['image-size', 'epochs', 'freeze-epochs', 'batch-size', 'source-size', 'val-size', 'lr-mult', 'lambda-domain', 'seed', 'threads', 'sim-workers', 'source-timeout', 'lr-find-batches']);
  const demo = a.target === undefined;
  if (demo && (a['target-val'] !== undefined || a['target-labels'] !== undefined)) throw new UserError('--target-val/--target-labels need --target (the unlabelled target training images)');
  if (!demo && a['target-val'] === undefined) throw new UserError('--target-val: give a folder of target validation images (the seed validates on both domains)');
  // lr-find takes neither --freeze-epochs nor --lr.
  const freezeEpochs = Number(a['freeze-epochs'] ?? 1);
  if (!Number.isInteger(freezeEpochs) || freezeEpochs < 0) throw new UserError(`--freeze-epochs ${a['freeze-epochs']}: must be 0 or a positive integer`);
  const runName = (a['run-name'] as string | undefined) ?? new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '');
  if (!/^[\w.-]+$/.test(runName)) throw new UserError(`--run-name ${runName}: use letters, digits, '.', '_' and '-' only`);
  const r: Resolved = {
    demo,
    imageSize: positive('image-size', a['image-size'] ?? (demo ? 128 : 256)),
    epochs: positive('epochs', a.epochs ?? (demo ? 2 : 100)),
    freezeEpochs,
    batchSize: positive('batch-size', a['batch-size'] ?? (demo ? 8 : 32)),
    sourceSize: positive('source-size', a['source-size'] ?? (demo ? 160 : 1000)),
    valSize: positive('val-size', a['val-size'] ?? (demo ? 64 : 1000)),
    runName,
    runDir: (a['run-dir'] as string | undefined) ?? join('runs', runName),
    normalization: normalizationFromName(String(a.normalization)),
  };
  if (r.sourceSize < r.batchSize) throw new UserError(`--source-size ${r.sourceSize} is smaller than --batch-size ${r.batchSize}; an epoch needs at least one batch`);
  if (r.valSize < r.batchSize) throw new UserError(`--val-size ${r.valSize} is smaller than --batch-size ${r.batchSize}; validation needs at least one batch`);
  if (Number(a['lambda-domain']) < 0 || !Number.isFinite(Number(a['lambda-domain']))) throw new UserError(`--lambda-domain ${a['lambda-domain']}: must be a number ≥ 0`);
  if (a.lr !== undefined && a.lr !== 'auto' && !(Number(a.lr) > 0 && Number.isFinite(Number(a.lr)))) throw new UserError(`--lr ${a.lr}: give a positive number such as 2e-3, or 'auto'`);
  return r;
}

async function artifactsFor(a: Args, r: Resolved): Promise<string> {
  if (a.artifacts) {
    const dir = String(a.artifacts);
    if (pathKind(dir) === 'run directory') throw new UserError(`--artifacts ${dir} is a training run, not a build-artifacts folder; give the artifacts the run was trained from (or continue that run with --run-dir ${dir} --resume)`);
    const built = readManifest(dir).config.imageSize;
    if (a['image-size'] !== undefined && Number(a['image-size']) !== built) {
      throw new UserError(`--image-size ${a['image-size']}: the --artifacts ${dir} are built for ${built} px; drop --image-size, or build ${a['image-size']} px artifacts with \`ort-dann build-artifacts --image-size ${a['image-size']}\``);
    }
    return dir;
  }
  const config = makeConfig({ imageSize: r.imageSize });
  const dir = defaultArtifactsDir(config.name, config.imageSize);
  if (!existsSync(join(dir, 'manifest.json'))) {
    process.stdout.write(`building artifacts for ${config.backbone} at ${config.imageSize} px into ${dir} (once)…\n`);
    await buildArtifacts({ config, out: dir, weights: 'none', weightsCache: join('models', 'weights'), seed: 0 });
  }
  return dir;
}

interface Prepared {
  r: Resolved;
  seed: number;
  artifacts: string;
  manifest: ReturnType<typeof readManifest>;
  runDir: string;
  source: BatchSource;
  sourceVal: BatchSource;
  target?: BatchSource;
  targetVal: BatchSource;
  targetDir: string;
  targetValDir: string;
  noDomain: boolean;
  /** Undefined: the loss sees raw labels (classification, --no-standardize-targets, or a resumed raw run). */
  targetScaling?: TargetScaling;
  session: TrainingSession;
  args: Args;
  close(): Promise<void>;
}

/** Everything train and lr-find share: flags, artifacts, data sources and the session. */
async function prepare(a: Args, r = resolveArgs(a)): Promise<Prepared> {
  // ORT's own log lines (e.g. a missing CUDA library) would repeat our one-line errors; --debug keeps them.
  if (!a.debug) quietRuntimeLog();
  const seed = Number(a.seed);
  const artifacts = await artifactsFor(a, r);
  const manifest = readManifest(artifacts);
  // One row per domain leaves a 1×1 feature map a single value per channel: no variance (PyTorch refuses it too).
  if (manifest.config.batchNormStats === 'per-domain' && r.batchSize < 2) throw new UserError(`--batch-size ${r.batchSize}: per-domain BatchNorm statistics need at least 2 images per domain; use --batch-size 2 or more (or artifacts built with --bn-stats combined)`);
  const S = manifest.config.imageSize;
  const runDir = resolve(r.runDir);
  if (a.resume && existsSync(join(runDir, 'manifest.json'))) {
    // The checkpoint may even load into other artifacts (same shapes at another image size) and then train on other inputs.
    const was = readManifest(runDir).config;
    const describe = (c: typeof was) => `${c.backbone} at ${c.imageSize} px (${c.outputs.join(', ')})`;
    if (describe(was) !== describe(manifest.config) || was.task !== manifest.config.task) {
      throw new UserError(`--resume: ${r.runDir} was trained with ${describe(was)}, but --artifacts ${artifacts} are ${describe(manifest.config)}; resume with the run's artifacts or start a new run`);
    }
  }
  let target = a.target as string | undefined;
  let targetVal = a['target-val'] as string | undefined;
  let targetLabels = a['target-labels'] as string | undefined;
  if (r.demo) {
    const demoDir = demoDataDir(S);
    process.stdout.write(`demo: no --target given; using the built-in domain-shift demo in ${demoDir}\n`);
    const demo = await ensureDemoData({ out: demoDir, size: S, seed: 0 });
    target = demo.targetTrain;
    targetVal = demo.targetVal;
    targetLabels = demo.targetValLabels;
  }
  const noDomain = a.domain === false;
  const common = { size: S, seed, normalization: r.normalization };
  const simWorkers = a['sim-workers'] === undefined ? undefined : Number(a['sim-workers']);
  const timeoutMs = Number(a['source-timeout']) * 1000;
  const sources: BatchSource[] = [];
  const track = <T extends BatchSource>(s: T) => { sources.push(s); return s; };
  const close = async () => { await Promise.all(sources.map((s) => s.close())); };
  try {
    const source = track(await openSource(String(a.source), { ...common, split: 'train', workers: simWorkers, timeoutMs, skipBadImages: Boolean(a['skip-bad-images']) }));
    const sourceVal = track(await openSource(String(a['source-val'] ?? a.source), { ...common, split: 'val', length: r.valSize, workers: simWorkers, timeoutMs, label: a['source-val'] ? '--source-val' : '--source' }));
    const targetSrc = noDomain ? undefined : track(await openTarget(target!, { ...common, split: 'train', skipBadImages: Boolean(a['skip-bad-images']) }));
    const targetValSrc = track(await openTarget(targetVal!, { ...common, split: 'val', labelsCsv: targetLabels, skipBadImages: Boolean(a['skip-bad-images']) }));
    checkBatchFits(r.batchSize, [[`--source ${a.source}`, source], [`--source-val ${a['source-val'] ?? a.source}`, sourceVal], [`--target ${target}`, targetSrc], [`--target-val ${targetVal}`, targetValSrc]]);
    const outputNames = manifest.config.outputs;
    if (source.outputNames && manifest.config.task === 'regression' && source.outputNames.join() !== outputNames.join()) {
      throw new UserError(`--source ${a.source}: its labels are ${source.outputNames.join(', ')} but the artifacts predict ${outputNames.join(', ')}; rebuild the artifacts with --outputs ${source.outputNames.join(',')}`);
    }
    // A resumed run keeps the statistics it started with, so its loss stays in the same units.
    const targetScaling = manifest.config.task !== 'regression' ? undefined
      : a.resume ? await readTargetScaling(join(runDir, 'latest', 'model.safetensors'), outputNames)
        : a['standardize-targets'] === false ? undefined : await targetScalingOf(source, outputNames, r.batchSize);
    // A resumed run opens its session on its latest checkpoint, so the checkpoint is read once, during session creation.
    const checkpointState = a.resume ? join(runDir, 'latest') : undefined;
    const session = await TrainingSession.create({ artifacts, checkpointState }, { executionProvider: a.ep as ExecutionProvider, threads: a.threads === undefined ? undefined : Number(a.threads), seed });
    return {
      r, seed, args: a, artifacts, manifest, runDir, source, sourceVal, target: targetSrc, targetVal: targetValSrc, targetDir: target!, targetValDir: targetVal!, noDomain, targetScaling, session,
      close: async () => { await session.release(); await close(); },
    };
  } catch (e) {
    await close();
    throw e;
  }
}

export async function runTrain(a: Args): Promise<void> {
  // No data flags: the demo trains the baseline and DANN and compares them (src/cli/demo.ts).
  if (a.target === undefined && a['target-val'] === undefined && a['target-labels'] === undefined && !a.resume) return (await import('./demo.ts')).runDemo(a, runTrain);
  if (a.monitor === 'dev' && a.domain === false) throw new UserError('--monitor dev: DEV weighs by the domain classifier, which a --no-domain run does not train; monitor valid_loss instead');
  // Started by a sweep agent: the sweep's parameters, project and run id (docs/wandb-sweeps.md).
  const sweep = applySweepEnvironment(a, trainFlags as Record<string, Options>);
  // --resume takes the run's remembered flags (args.json) wherever they are not given again.
  const stored = a.resume && (a['run-dir'] ?? a['run-name']) !== undefined
    ? restoreRunArgs(resolve(String(a['run-dir'] ?? join('runs', String(a['run-name'])))), a, process.argv.slice(2)) : undefined;
  const resolved = resolveArgs(a);
  const lock = acquireRunLock(resolve(resolved.runDir), '--run-dir', warn);
  try {
    await trainLocked(a, resolved, stored, sweep?.params);
  } finally {
    lock.release();
  }
}

async function trainLocked(a: Args, resolved: Resolved, stored?: Record<string, unknown>, sweepParams?: Record<string, unknown>): Promise<void> {
  const resumeFrom = join(resolve(resolved.runDir), 'latest');
  // A run killed between the two renames of a checkpoint swap left <dir>.old-/.tmp-<pid>; put the checkpoints back first.
  if (a.resume) for (const dir of [resumeFrom, join(resolve(resolved.runDir), 'best')]) await recoverAtomicDir(dir);
  if (a.resume && !existsSync(join(resumeFrom, 'model.safetensors'))) throw new UserError(`--resume: ${resumeFrom} holds no checkpoint; start without --resume or give the --run-dir of an earlier run`);
  if (a.resume && !existsSync(join(resumeFrom, 'optimizer.safetensors'))) throw new UserError(`--resume: ${resumeFrom} holds the weights but not optimizer.safetensors, so the run cannot continue where it stopped; restore that file, or start a new run with another --run-name`);
  if (!a.resume && existsSync(join(resumeFrom, 'model.safetensors'))) throw new UserError(`--run-dir ${resolved.runDir} already holds a run; pass --resume to continue it or choose another --run-name`);
  // One resolution: the default run name is a timestamp, so a second call could name another folder.
  const p = await prepare(a, resolved);
  const { r, seed, artifacts, manifest, runDir, source, sourceVal, session, noDomain, targetScaling } = p;
  const S = manifest.config.imageSize;
  try {
    const monitor = String(a.monitor);
    const validation = validationFor(session, p.targetVal, { domainTrained: !noDomain, targetScaling: p.targetScaling });
    const metric = validation.find(monitor);
    if (!metric) throw new UserError(`--monitor ${monitor}: no such metric; choose one of ${validation.metrics.map((m) => m.name).join(', ')}`);
    const direction = a['monitor-mode'] === 'auto' ? metric.direction : (a['monitor-mode'] as 'min' | 'max');
    const patience = a.patience === undefined ? undefined : positive('patience', a.patience);
    await mkdir(runDir, { recursive: true });
    const log = pino({ level: 'info' }, pino.destination({ dest: join(runDir, 'train.log'), sync: false, mkdir: true }));
    // `ort-dann export --checkpoint <run>` then preprocesses as this run did, without its model.onnx.
    session.checkpointMetadata = { [CHECKPOINT_META.normalization]: JSON.stringify(r.normalization), [CHECKPOINT_META.runId]: r.runName };
    if (targetScaling) session.checkpointMetadata[TARGET_SCALING_META] = JSON.stringify(targetScaling);
    let resume: ResumeState | undefined;
    if (a.resume) resume = session.trainerState as unknown as ResumeState;
    else await copyFile(join(artifacts, 'manifest.json'), join(runDir, 'manifest.json'));
    const nIter = Math.floor(r.sourceSize / r.batchSize);
    let baseLr: number;
    if (a.lr === 'auto') {
      baseLr = await findLr(p, Number(a['lambda-domain']));
    } else {
      baseLr = Number(a.lr);
    }
    const plan = fineTuneDannPlan({ epochs: r.epochs, freezeEpochs: r.freezeEpochs, baseLr, lrMult: Number(a['lr-mult']), nGroups: session.groupCount, nIter });
    if (resume) {
      const replan = describeReplan({ runDir: r.runDir, step: resume.step, totalSteps: plan.totalSteps, nIter, stored, epochs: r.epochs, freezeEpochs: r.freezeEpochs, finished: existsSync(join(runDir, 'summary.json')) });
      if (replan) process.stdout.write(`${replan}\n`);
    }
    // The flags of the run (with the learning rate lr_find chose) are what a later --resume continues;
    // a resume's own flags replace them once it has trained without error.
    const remember = () => saveRunArgs(runDir, { ...a, lr: String(baseLr) });
    if (!resume) await remember();
    const hyper = {
      epochs: r.epochs, freeze_epochs: r.freezeEpochs, batch_size: r.batchSize, source_data_size: r.sourceSize, validation_data_size: r.valSize,
      lr: baseLr, lr_mult: Number(a['lr-mult']), lambda_domain: noDomain ? 0 : Number(a['lambda-domain']), domain: !noDomain, seed,
      source: a.source, target: p.targetDir, target_val: p.targetValDir, normalization: r.normalization.kind, image_size: S, monitor, ep: a.ep,
      standardize_targets: targetScaling !== undefined, ...(targetScaling ? { target_scaling: targetScaling } : {}),
    };
    const tracking = await createTracking({
      ...trackingOptionsFromArgs(a), name: (a['wandb-name'] as string | undefined) ?? r.runName, runDir,
      // A sweep's parameters stay in the config unchanged, under their own names: the controller matches runs on them.
      config: { ...hyper, model: manifest.config, artifacts_format: manifest.formatVersion, weights: manifest.weights, ...sweepParams },
      logger: { info: (m) => process.stdout.write(`${m}\n`), warn: (m) => process.stderr.write(`ort-dann: warning: ${m}\n`) },
    });
    log.info({ hyper, artifacts, runDir, wandb: tracking.mode }, 'training starts');
    let interrupted = false;
    const onSigint = () => {
      if (interrupted) process.exit(130);
      interrupted = true;
      process.stderr.write('\nort-dann: interrupted; saving the latest checkpoint after this step (Ctrl-C again to quit at once)\n');
    };
    process.on('SIGINT', onSigint);
    // SIGTERM (a sweep's `stop`, a scheduler) ends the run like W&B's Stop button: after this step, checkpoint kept, exit 0.
    let terminated = false;
    const onSigterm = () => {
      if (!terminated) process.stderr.write('\nort-dann: terminated; saving the latest checkpoint after this step\n');
      terminated = true;
    };
    process.on('SIGTERM', onSigterm);
    let exitCode = 1;
    let modelPath: string | undefined;
    try {
      const earlyStopping = patience === undefined ? undefined : new EarlyStopping({ monitor: { name: monitor, direction }, patience, resume: resume?.callbacks?.['early-stopping'] });
      // Checkpoints come after the callbacks whose state they save.
      const domainAccuracy = new DomainAccuracySpread({ resume: resume?.callbacks?.['domain-accuracy'] });
      const checkpoints = new SaveCheckpoints({ session, runDir, monitor: { name: monitor, direction }, resume, others: [domainAccuracy, ...(earlyStopping ? [earlyStopping] : [])] });
      const nanPolicy = new NanPolicy({ mode: a['on-nan'] as 'stop' | 'skip', gradients: () => session.gradients, lastCheckpoint: () => checkpoints.lastCheckpoint });
      const callbacks = [
        new EpochProgress({ stepsPerEpoch: nIter, epochs: r.freezeEpochs + r.epochs }),
        new Recorder(),
        nanPolicy,
        ...tracking.callbacks,
        { name: 'log', afterEpoch: (st: { epoch: number; metrics?: Record<string, number>; smoothLoss?: number }) => log.info({ epoch: st.epoch, train_loss: st.smoothLoss, ...st.metrics }, 'epoch') },
        ...(earlyStopping ? [earlyStopping] : []),
        domainAccuracy,
        checkpoints,
      ];
      const result = await fit({
        session, source, target: p.target, sourceVal, targetVal: p.targetVal, batchSize: r.batchSize,
        valSteps: Math.floor(r.valSize / r.batchSize), plan, lambdaDomain: Number(a['lambda-domain']), callbacks, validation, resume,
        interrupted: () => interrupted || terminated || tracking.stopRequested, targetScaling: p.targetScaling,
      });
      const best = checkpoints.best;
      if (resume) await remember();
      if (result.stoppedEarly) {
        process.stdout.write(`stopped at step ${result.state.step}/${plan.totalSteps}; continue with: npx ort-dann train --run-dir ${r.runDir} --resume\n`);
        exitCode = interrupted ? 130 : 0;
      } else {
        if (result.state.finishRequested) process.stdout.write(`early stopping: ${monitor} did not improve for ${patience} epochs; stopped at step ${result.state.step}/${plan.totalSteps}\n`);
        // SaveModelCallback reloads the best model at the end; export that.
        if (best) await session.loadCheckpoint(join(runDir, 'best'));
        modelPath = join(runDir, 'model.onnx');
        const exported = await exportInferenceModel({ manifest, checkpoint: session.stateDict(), out: modelPath, metadata: { normalization: r.normalization, runId: r.runName }, targetScaling: p.targetScaling });
        // Epochs counted from 1, as the console's "epoch k/n" and the report's x axis count them.
        const bestFrom1 = best && { value: best.value, epoch: best.epoch + 1 };
        await writeFileAtomic(join(runDir, 'summary.json'), `${JSON.stringify({ best: bestFrom1, monitor, final: result.state.metrics, domain_accuracy_last_epochs: domainAccuracy.summary(), steps: result.state.step, model: modelPath, skippedBatches: nanPolicy.skipped }, null, 2)}\n`);
        process.stdout.write(`best ${monitor} ${best?.value.toFixed(5) ?? 'n/a'} at epoch ${bestFrom1?.epoch ?? '-'}; model ${exported.out} (${(exported.bytes / 1e6).toFixed(1)} MB); report ${join(runDir, 'report.html')}\n`);
        exitCode = 0;
      }
    } finally {
      process.off('SIGINT', onSigint);
      process.off('SIGTERM', onSigterm);
      await tracking.finish(exitCode, modelPath);
      log.flush();
    }
    if (exitCode !== 0) process.exitCode = exitCode;
  } finally {
    await p.close();
  }
}

/** fastai lr_find on the DANN step (body frozen, as fine_tune's first fit), with weights, BN statistics and Adam state restored afterwards. */
async function findLr(p: Prepared, lambda: number): Promise<number> {
  const { session, source, target, r, runDir, noDomain } = p;
  await mkdir(runDir, { recursive: true });
  const saved = join(runDir, '.lr-find-state');
  await session.saveCheckpoint(saved);
  session.freezeTo(1);
  session.resetOptimizerState();
  const numIt = Number(p.args['lr-find-batches']);
  const started = performance.now();
  const result = await lrFind(async (lr, it) => {
    // A line every tenth of the way: lr_find takes minutes on a CPU.
    if (it % Math.max(1, Math.round(numIt / 10)) === 0) process.stdout.write(`lr_find: batch ${it + 1}/${numIt} at lr ${lr.toExponential(1)} (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    const s = await source.nextBatch(r.batchSize);
    const t = noDomain ? undefined : await target!.nextBatch(r.batchSize);
    session.lazyResetGrad();
    const batch = combineBatches(s, t);
    if (p.targetScaling) batch.labels = standardize(batch.labels, p.targetScaling);
    const losses = await dannTrainStep(session, batch, { alpha: 0, lambdaDomain: noDomain ? 0 : lambda });
    await session.runOptimizerStep(session.hypersFor(lr));
    return losses.loss;
  }, { numIt });
  await session.loadCheckpoint(saved);
  await rm(saved, { recursive: true, force: true });
  await writeFileAtomic(join(runDir, 'lr_find.png'), plotLrFind(result));
  if (!result.valley) throw new UserError(`--lr auto: lr_find stopped after ${result.lrs.length} batches without a suggestion (loss diverged); give --lr explicitly`);
  process.stdout.write(`lr_find: valley at ${result.valley.lr.toExponential(2)} after ${result.lrs.length} batches (plot ${join(runDir, 'lr_find.png')})\n`);
  return result.valley.lr;
}

/** lr-find takes the data, model and session flags of train; the schedule, run and W&B flags mean nothing to it. */
const lrFindFlags = {
  ...without(trainFlags, 'run-dir', 'run-name', 'resume', 'epochs', 'freeze-epochs', 'source-size', 'val-size', 'lr', 'lr-mult', 'monitor', 'monitor-mode', 'patience', 'on-nan',
    'wandb', ...(Object.keys(wandbFlags) as (keyof typeof wandbFlags)[])),
  'out-dir': { type: 'string', describe: 'Where lr_find.png goes (default runs/lr-find-<time>)' },
} as const satisfies Record<string, Options>;

export const lrFindCommand: CommandModule<object, Args> = {
  command: 'lr-find',
  describe: "fastai's learning-rate finder on the DANN step: prints the valley suggestion and writes lr_find.png",
  builder: (y) => y.options(lrFindFlags as Record<string, Options>),
  handler: async (args) => {
    const outDir = (args['out-dir'] as string | undefined) ?? join('runs', `lr-find-${new Date().toISOString().replace(/[:.]/g, '-').replace(/Z$/, '')}`);
    const withDir = { ...args, 'run-dir': outDir };
    const r = resolveArgs(withDir);
    const lock = acquireRunLock(resolve(r.runDir), '--out-dir', warn);
    try {
      const p = await prepare(withDir, r);
      try {
        await findLr(p, Number(args['lambda-domain']));
      } finally {
        await p.close();
      }
    } finally {
      lock.release();
    }
  },
};

export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train DANN (fine_tune_dann recipe) and export the inference model; with no data flags, runs the built-in demo',
  builder: (y) => y.options(trainFlags as Record<string, Options>).example('$0 train', 'the built-in demo (a few minutes on 2 cores)')
    .example('$0 train --epochs 100 --source ./my-sim.mjs --target real/train --target-val real/val', 'the seed recipe on your data'),
  handler: async (args) => runTrain(args),
};

