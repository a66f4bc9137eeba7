/**
 * Uploads runs kept on disk (offline runs, or online runs whose upload could not finish) to W&B: the
 * same UpsertBucket, file_stream and upload code as a live run, fed from the journal. It resumes where
 * sync.json says the server stopped acknowledging, so nothing is sent twice and an interrupted sync can
 * simply be run again.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import { noOffsets, STREAM_FILES, type Offsets } from './filestream.ts';
import { findJournals, loadJournal, upsertVariablesFor, type LoadedJournal } from './offline.ts';
import { Reporter, stderrLogger, type TrackingLogger } from '../reporter.ts';
import { DEFAULT_TIMING, USER_AGENT, type Timing } from './run.ts';
import { appUrlFor, checkApiKey, findApiKey, netrcMachine, normalizeBaseUrl } from './settings.ts';
import { sessionTarget, UploadSession } from './uploads.ts';
import { UnreachableError, WandbApi } from './wandb.ts';
import { LatestWriter } from '../latest-writer.ts';

export interface SyncOptions {
  /** Override the entity/project recorded in the run. */
  entity?: string;
  project?: string;
  baseUrl?: string;
  apiKey?: string;
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
  logger?: TrackingLogger;
  timing?: Partial<Timing>;
}

export interface SyncResult {
  dir: string;
  url: string;
  /** False when the upload did not finish; running sync again continues it. */
  complete: boolean;
  alreadySynced: boolean;
}

/** Syncs every run journal under an ort-dann run directory (or the one journal `path` names). */
export async function syncRunDir(path: string, opts: SyncOptions = {}): Promise<SyncResult[]> {
  if (!existsSync(path)) throw new UserError(`${path} does not exist; name an ort-dann run directory`);
  const dirs = await findJournals(path);
  if (dirs.length === 0) throw new UserError(`${path} holds no W&B runs (no wandb/*run-*/run.json); was it trained with --wandb disabled?`);
  const results: SyncResult[] = [];
  for (const dir of dirs) results.push(await syncJournal(dir, opts));
  return results;
}

export async function syncJournal(dir: string, opts: SyncOptions = {}): Promise<SyncResult> {
  const env = opts.env ?? process.env;
  const timing: Timing = { ...DEFAULT_TIMING, ...opts.timing };
  const j = await loadJournal(dir);
  try {
    return await upload(j, opts, env, timing);
  } finally {
    await Promise.all(STREAM_FILES.map((n) => j.spools[n].close()));
  }
}

async function upload(j: LoadedJournal, opts: SyncOptions, env: NodeJS.ProcessEnv, timing: Timing): Promise<SyncResult> {
  const { run } = j;
  if (j.sync?.complete) {
    (opts.logger ?? stderrLogger).info(`${j.dir} is already synced: ${j.sync.url}`);
    return { dir: j.dir, url: j.sync.url, complete: true, alreadySynced: true };
  }
  const baseSource = opts.baseUrl ? 'the baseUrl option' : env.WANDB_BASE_URL ? 'WANDB_BASE_URL' : join(j.dir, 'run.json');
  const baseUrl = normalizeBaseUrl(opts.baseUrl ?? env.WANDB_BASE_URL ?? run.baseUrl, baseSource);
  const found = await findApiKey(baseUrl, { apiKey: opts.apiKey, env, homeDir: opts.homeDir });
  if (!found) {
    throw new UserError(`wandb-sync needs a W&B API key: set WANDB_API_KEY, or add "machine ${netrcMachine(baseUrl)} login user password <key>" to ~/.netrc`);
  }
  checkApiKey(found.key, found.source);
  const reporter = new Reporter(opts.logger ?? stderrLogger, found.key);
  const appUrl = appUrlFor(baseUrl, env);
  const api = new WandbApi({ baseUrl, appUrl, apiKey: found.key, apiKeySource: found.source, timing, reporter, userAgent: USER_AGENT });
  const keepAlive = setInterval(() => {}, 1 << 30);
  try {
    for (const name of j.cutOff) reporter.warn(`the last line of ${join(j.dir, 'files', name)} was cut off (the run crashed while writing it); it is skipped`);
    let up;
    try {
      up = await api.upsertBucket(
        {
          ...upsertVariablesFor(run),
          project: opts.project ?? j.sync?.project ?? run.project,
          entity: opts.entity ?? j.sync?.entity ?? run.entity,
        },
        timing.startAttempts,
      );
    } catch (e) {
      if (e instanceof UnreachableError) throw new UserError(`cannot reach W&B at ${baseUrl} (${e.message}); try ort-dann wandb-sync again later`);
      throw e;
    }
    const target = sessionTarget(up, appUrl, j.sync?.historyBase ?? 0);
    const start: Offsets = { ...noOffsets(), ...j.sync?.acked };
    // The server may hold more history than sync.json recorded (it is written after each answer, and an
    // answer can be lost); its line count is authoritative for history.
    const history = j.spools['wandb-history.jsonl'];
    start['wandb-history.jsonl'] = Math.min(history.count, Math.max(start['wandb-history.jsonl'], up.historyLineCount - target.historyBase));
    const summaryText = await readFile(join(j.dir, 'files', 'wandb-summary.json'), 'utf8').then((t) => t.trim(), () => '');
    reporter.info(`syncing ${j.dir} to ${target.url}`);
    const session = new UploadSession({
      api,
      target,
      journalDir: j.dir,
      writer: new LatestWriter((p, e) => reporter.warnOnce(`write-${p}`, `cannot write ${p} (${e.message})`)),
      spools: j.spools,
      start,
      uploaded: j.sync?.uploaded ?? [],
      summary: () => (summaryText ? { version: 1, line: summaryText } : undefined),
      // Replaying needs no pacing beyond W&B's per-run rate limit (2 requests/s).
      timing: { ...timing, transmitMs: () => Math.min(500, timing.transmitMs(0)) },
      reporter,
      onStopped: () => {},
    });
    const files = ['config.yaml', 'wandb-metadata.json', 'wandb-summary.json', 'output.log'].map((name) => ({ name, path: join(j.dir, 'files', name) }));
    for (const f of j.exit?.files ?? []) files.push({ name: f.name, path: resolve(j.dir, f.path) });
    for (const f of files) if (existsSync(f.path)) session.upload(f.name, f.path);
    if (!j.exit) reporter.warn(`${basename(j.dir)} has no exit record (the training process died); it is marked as failed (exit code 1)`);
    const complete = await session.finish(j.exit?.exitCode ?? 1, Date.now() + timing.finishTimeoutMs);
    const url = target.url;
    if (complete) reporter.info(`synced: ${url}`);
    else reporter.warn(`sync of ${j.dir} did not finish; run ort-dann wandb-sync again to continue`);
    return { dir: j.dir, url, complete, alreadySynced: false };
  } finally {
    clearInterval(keepAlive);
    api.close();
  }
}

