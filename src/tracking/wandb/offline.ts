/**
 * The run journal: every W&B run (online or offline) is kept on disk under the ort-dann run directory,
 * so an offline run, or an online one whose upload could not finish, can be uploaded later by
 * `ort-dann wandb-sync`. Layout (all text):
 *
 *   <runDir>/wandb/<offline-run|run>-YYYYMMDD_HHMMSS-<runId>/
 *     run.json          what UpsertBucket needs: id, project, entity, name, tags, notes, group, job type,
 *                       config (unwrapped), base URL, start time. Never the API key.
 *     files/            the run's files as W&B stores them: wandb-history.jsonl, wandb-events.jsonl,
 *                       output.log (one W&B line per line, NaN/Infinity as bare tokens), wandb-summary.json,
 *                       config.yaml, wandb-metadata.json
 *     exit.json         written by finish: exit code, runtime, extra files to upload (the exported model)
 *     sync.json         what the server has acknowledged: lines per streamed file, uploaded files, complete
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import { parseWandbJson, toWandbJson } from '../extended-json.ts';
import type { LatestWriter } from '../latest-writer.ts';
import { STREAM_FILES, type Offsets, type StreamFile } from './filestream.ts';
import { configJson } from './run-files.ts';
import { Spool, type SpoolOptions } from './spool.ts';
import type { UpsertVariables } from './wandb.ts';

export const JOURNAL_FORMAT = 'ort-dann-wandb-run';
export const JOURNAL_VERSION = 1;

export interface RunRecord {
  format: typeof JOURNAL_FORMAT;
  version: number;
  runId: string;
  entity: string | null;
  project: string;
  displayName: string | null;
  tags: string[];
  notes: string | null;
  group: string | null;
  jobType: string | null;
  config: Record<string, unknown>;
  baseUrl: string;
  startedAt: string;
  host: string;
  repo: string | null;
  commit: string | null;
  /** The sweep the run belongs to (absent in journals written before sweeps). */
  sweep?: string | null;
}

/** The UpsertBucket variables that create (or, from wandb-sync, re-create) the run this record describes. */
export function upsertVariablesFor(run: RunRecord): UpsertVariables {
  return {
    name: run.runId,
    project: run.project,
    entity: run.entity,
    displayName: run.displayName,
    notes: run.notes,
    groupName: run.group,
    jobType: run.jobType,
    tags: run.tags,
    config: configJson(run.config),
    host: run.host,
    program: 'ort-dann',
    repo: run.repo,
    commit: run.commit,
    sweep: run.sweep ?? null,
  };
}

export interface ExitRecord {
  exitCode: number;
  runtime: number;
  finishedAt: string;
  /** Extra run files, `path` relative to the journal directory. */
  files: { name: string; path: string }[];
}

export interface SyncRecord {
  entity: string;
  project: string;
  runId: string;
  url: string;
  /** Server line number of the journal's first history line (the run existed before with history). */
  historyBase: number;
  acked: Offsets;
  uploaded: string[];
  complete: boolean;
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}_${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export class RunJournal {
  private constructor(
    readonly dir: string,
    readonly spools: Record<StreamFile, Spool>,
    readonly writer: LatestWriter,
  ) {}

  /** Creates the journal directory and its spools, and writes run.json. */
  static async create(runDir: string, online: boolean, run: RunRecord, spoolOptions: SpoolOptions, writer: LatestWriter): Promise<RunJournal> {
    const dir = join(runDir, 'wandb', `${online ? 'run' : 'offline-run'}-${stamp(new Date(run.startedAt))}-${run.runId}`);
    await mkdir(join(dir, 'files'), { recursive: true });
    const spools = {} as Record<StreamFile, Spool>;
    for (const name of STREAM_FILES) spools[name] = await Spool.create(join(dir, 'files', name), spoolOptions);
    const journal = new RunJournal(dir, spools, writer);
    journal.writeRecord('run.json', run);
    return journal;
  }

  filePath(name: string): string {
    return join(this.dir, 'files', name);
  }

  writeFile(name: string, content: string): void {
    this.writer.write(this.filePath(name), content);
  }

  writeRecord(name: 'run.json' | 'exit.json' | 'sync.json', record: RunRecord | ExitRecord | SyncRecord): void {
    this.writer.write(join(this.dir, name), `${toWandbJson(record)}\n`);
  }

  /** Everything appended or written so far is on disk. */
  async flush(): Promise<void> {
    await Promise.all(STREAM_FILES.map((n) => this.spools[n].flush()));
    await this.writer.flush();
  }

  async close(): Promise<void> {
    await Promise.all(STREAM_FILES.map((n) => this.spools[n].close()));
    await this.writer.flush();
  }
}

export interface LoadedJournal {
  dir: string;
  run: RunRecord;
  exit?: ExitRecord;
  sync?: SyncRecord;
  spools: Record<StreamFile, Spool>;
  /** Streamed files whose last line was cut off by a crash. */
  cutOff: StreamFile[];
}

async function readRecord<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return parseWandbJson(text) as T;
  } catch {
    throw new UserError(`${path} is damaged (not JSON); restore it or delete this run's directory`);
  }
}

export async function loadJournal(dir: string): Promise<LoadedJournal> {
  const run = await readRecord<RunRecord>(join(dir, 'run.json'));
  if (!run || run.format !== JOURNAL_FORMAT) throw new UserError(`${dir} is not an ort-dann W&B run directory (no run.json)`);
  if (run.version > JOURNAL_VERSION) throw new UserError(`${join(dir, 'run.json')} has format version ${run.version}; upgrade ort-dann to sync it`);
  const spools = {} as Record<StreamFile, Spool>;
  const cutOff: StreamFile[] = [];
  for (const name of STREAM_FILES) {
    const path = join(dir, 'files', name);
    if (!existsSync(path)) await writeFile(path, '');
    const opened = await Spool.openExisting(path);
    spools[name] = opened.spool;
    if (opened.cutOff) cutOff.push(name);
  }
  return {
    dir,
    run,
    exit: await readRecord<ExitRecord>(join(dir, 'exit.json')),
    sync: await readRecord<SyncRecord>(join(dir, 'sync.json')),
    spools,
    cutOff,
  };
}

const JOURNAL_DIR = /^(?:offline-)?run-\d{8}_\d{6}-[^/]+$/;

/** The journals in an ort-dann run directory (oldest first), or the journal a path names itself. */
export async function findJournals(path: string): Promise<string[]> {
  if (existsSync(join(path, 'run.json'))) return [path];
  const root = join(path, 'wandb');
  if (!existsSync(root)) return [];
  const names = (await readdir(root)).filter((n) => JOURNAL_DIR.test(n) && existsSync(join(root, n, 'run.json')));
  // Sort by the timestamp, not the prefix, so offline and online runs interleave in time order.
  names.sort((a, b) => a.replace(/^offline-/, '').localeCompare(b.replace(/^offline-/, '')));
  return names.map((n) => join(root, n));
}
