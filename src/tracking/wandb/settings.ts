/**
 * Where the W&B settings come from: explicit options (the train command's flags) first, then the usual
 * `WANDB_*` variables, then `~/.netrc` for the key, as the Python SDK resolves them.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';

export type TrackingMode = 'online' | 'offline' | 'disabled';

export const DEFAULT_BASE_URL = 'https://api.wandb.ai';
export const DEFAULT_PROJECT = 'uncategorized';

/** The train command's flag names, used in error messages so users know what to change. */
export const FLAGS = {
  mode: '--wandb',
  project: '--wandb-project',
  entity: '--wandb-entity',
  runId: '--wandb-run-id',
} as const;

export interface NetrcEntry {
  /** null for the `default` entry. */
  machine: string | null;
  login?: string;
  password?: string;
  account?: string;
}

/**
 * Parses a .netrc as ftp(1) and Python's netrc module read it: whitespace-separated tokens in any layout,
 * `#` comments at the start of a token, double-quoted tokens with backslash escapes, `macdef` bodies up to
 * the next blank line skipped.
 */
export function parseNetrc(text: string): NetrcEntry[] {
  const entries: NetrcEntry[] = [];
  let current: NetrcEntry | undefined;
  let i = 0;
  const next = (): string | undefined => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i])) i++;
      if (i >= text.length) return undefined;
      if (text[i] === '#') {
        while (i < text.length && text[i] !== '\n') i++;
        continue;
      }
      let token = '';
      if (text[i] === '"') {
        i++;
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          token += text[i++];
        }
        i++;
      } else {
        while (i < text.length && !/\s/.test(text[i])) {
          if (text[i] === '\\' && i + 1 < text.length) i++;
          token += text[i++];
        }
      }
      return token;
    }
  };
  for (let token = next(); token !== undefined; token = next()) {
    switch (token) {
      case 'machine':
        current = { machine: next() ?? '' };
        entries.push(current);
        break;
      case 'default':
        current = { machine: null };
        entries.push(current);
        break;
      case 'login':
      case 'password':
      case 'account': {
        const value = next();
        if (current && value !== undefined) current[token] = value;
        break;
      }
      case 'macdef': {
        next();
        const end = text.indexOf('\n\n', i);
        i = end < 0 ? text.length : end + 2;
        current = undefined;
        break;
      }
      default:
        // Unknown tokens (e.g. `port` from some clients) carry no credentials here.
        break;
    }
  }
  return entries;
}

/** The netrc file the Python SDK would read: $NETRC, else ~/.netrc, else ~/_netrc. */
export function netrcPath(env: NodeJS.ProcessEnv, home: string): string | undefined {
  if (env.NETRC) return env.NETRC;
  for (const name of ['.netrc', '_netrc']) {
    const p = join(home, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

/** host[:port] of the base URL: the `machine` that `wandb login` writes. */
export function netrcMachine(baseUrl: string): string {
  return new URL(baseUrl).host;
}

export function findNetrcPassword(entries: NetrcEntry[], machine: string): string | undefined {
  const exact = entries.find((e) => e.machine === machine && e.password);
  return (exact ?? entries.find((e) => e.machine === null && e.password))?.password;
}

export function normalizeBaseUrl(raw: string, source: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new UserError(`${source} "${raw}" is not a URL; use e.g. ${DEFAULT_BASE_URL}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UserError(`${source} "${raw}" must be an http(s) URL, e.g. ${DEFAULT_BASE_URL}`);
  }
  return url.toString().replace(/\/+$/, '');
}

/** The UI host for run links: WANDB_APP_URL, else api.wandb.ai → wandb.ai, api.x → app.x, else the API URL. */
export function appUrlFor(baseUrl: string, env: NodeJS.ProcessEnv): string {
  if (env.WANDB_APP_URL) return env.WANDB_APP_URL.replace(/\/+$/, '');
  if (baseUrl.includes('://api.wandb.')) return baseUrl.replace('://api.', '://');
  if (baseUrl.includes('://api.')) return baseUrl.replace('://api.', '://app.');
  return baseUrl;
}

export function runUrlFor(appUrl: string, entity: string, project: string, runId: string): string {
  return `${appUrl}/${encodeURIComponent(entity)}/${encodeURIComponent(project)}/runs/${encodeURIComponent(runId)}`;
}

/** Same rule as the Python SDK's validator: optional `prefix-`, then 40+ word characters; or a JWT. */
export function checkApiKey(key: string, source: string): void {
  const body = key.includes('-') ? key.slice(key.lastIndexOf('-') + 1) : key;
  const jwt = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/.test(key);
  if (!jwt && !/^[A-Za-z0-9_]{40,}$/.test(body)) {
    throw new UserError(
      `the W&B API key from ${source} is malformed (expected 40 or more letters, digits or underscores); ` +
        'copy it again from https://wandb.ai/authorize',
    );
  }
}

export function checkProject(project: string, source: string): void {
  if (project.length === 0 || project.length > 128 || /[/\\#?%:]/.test(project)) {
    throw new UserError(`${source} "${project}" is not a valid W&B project name (1-128 characters, none of / \\ # ? % :)`);
  }
}

export function checkRunId(id: string, source: string): void {
  if (id.length === 0 || id.length > 128 || /[:;,#?/'\s]/.test(id)) {
    throw new UserError(`${source} "${id}" is not a valid W&B run id (no spaces or : ; , # ? / ')`);
  }
}

/** 8 characters from [a-z0-9], as the SDKs generate them. */
export function newRunId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return Array.from(randomBytes(8), (b) => alphabet[b % alphabet.length]).join('');
}

/** What the caller (the train command's flags) says; unset fields fall back to the environment. */
export interface SettingsInput {
  /** Default: WANDB_MODE, else online when an API key is found (WANDB_API_KEY, ~/.netrc), else offline. */
  mode?: TrackingMode;
  /** These win over WANDB_PROJECT, WANDB_ENTITY, WANDB_NAME, WANDB_TAGS, WANDB_NOTES, WANDB_RUN_GROUP, WANDB_JOB_TYPE, WANDB_RUN_ID. */
  project?: string;
  entity?: string;
  name?: string;
  tags?: string[];
  notes?: string;
  group?: string;
  jobType?: string;
  runId?: string;
  /** Default: WANDB_BASE_URL, else https://api.wandb.ai. */
  baseUrl?: string;
  /** Default: WANDB_API_KEY, else the ~/.netrc entry for the base URL's host. */
  apiKey?: string;
  /** For tests: the environment and home directory (netrc) to read instead of the process's. */
  env?: NodeJS.ProcessEnv;
  homeDir?: string;
}

export interface Settings {
  mode: TrackingMode;
  baseUrl: string;
  appUrl: string;
  /** Only in online mode. Never logged or written anywhere. */
  apiKey?: string;
  /** Where the key came from, for error messages ("WANDB_API_KEY", "~/.netrc (machine api.wandb.ai)"). */
  apiKeySource?: string;
  /** A key found in any mode: never used, only scrubbed from everything written (a user may paste it anywhere). */
  secret?: string;
  project: string;
  entity?: string;
  name?: string;
  tags: string[];
  notes?: string;
  group?: string;
  jobType?: string;
  runId: string;
  /** WANDB_SWEEP_ID, set by a sweep agent: the run joins that sweep. */
  sweepId?: string;
  username?: string;
  graphqlTimeoutMs?: number;
}

export interface ApiKeyFound {
  key: string;
  source: string;
}

/** The API key: explicit option, then WANDB_API_KEY, then the netrc entry for the base URL's host. */
export async function findApiKey(baseUrl: string, input: Pick<SettingsInput, 'apiKey' | 'env' | 'homeDir'>): Promise<ApiKeyFound | undefined> {
  const env = input.env ?? process.env;
  if (input.apiKey?.trim()) return { key: input.apiKey.trim(), source: 'the apiKey option' };
  if (env.WANDB_API_KEY?.trim()) return { key: env.WANDB_API_KEY.trim(), source: 'WANDB_API_KEY' };
  const path = netrcPath(env, input.homeDir ?? homedir());
  if (!path) return undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserError(`cannot read ${path} (${(e as NodeJS.ErrnoException).code}); fix its permissions or set WANDB_API_KEY`);
  }
  const machine = netrcMachine(baseUrl);
  const key = findNetrcPassword(parseNetrc(text), machine);
  return key ? { key: key.trim(), source: `${path} (machine ${machine})` } : undefined;
}

export function parseMode(raw: string, source: string): TrackingMode {
  switch (raw.trim().toLowerCase()) {
    case 'online':
    case 'run':
    case 'shared':
      return 'online';
    case 'offline':
    case 'dryrun':
      return 'offline';
    case 'disabled':
      return 'disabled';
    default:
      throw new UserError(`${source}=${raw} is not a W&B mode; use online, offline or disabled`);
  }
}

const nonEmpty = (...values: (string | undefined)[]): string | undefined => values.find((v) => v !== undefined && v.trim() !== '')?.trim();

/**
 * Resolves every setting. The mode defaults to online when a key is found and offline otherwise;
 * asking for online without a key is an error the user can fix.
 */
export async function resolveSettings(input: SettingsInput): Promise<Settings> {
  const env = input.env ?? process.env;
  const truthy = (v: string | undefined) => v !== undefined && /^(1|true|yes)$/i.test(v.trim());
  const explicitMode = input.mode ?? (truthy(env.WANDB_DISABLED) ? 'disabled' : env.WANDB_MODE ? parseMode(env.WANDB_MODE, 'WANDB_MODE') : undefined);
  const baseSource = input.baseUrl ? 'the baseUrl option' : 'WANDB_BASE_URL';
  const baseUrl = normalizeBaseUrl(nonEmpty(input.baseUrl, env.WANDB_BASE_URL) ?? DEFAULT_BASE_URL, baseSource);
  const onlineWanted = explicitMode === undefined || explicitMode === 'online';
  // Offline and disabled runs look for the key too, only to scrub it, and never fail over it.
  const found = onlineWanted ? await findApiKey(baseUrl, input) : await findApiKey(baseUrl, input).catch(() => undefined);
  const mode: TrackingMode = explicitMode ?? (found ? 'online' : 'offline');
  if (mode === 'online' && !found) {
    throw new UserError(
      `${FLAGS.mode} online needs a W&B API key: set WANDB_API_KEY, or add "machine ${netrcMachine(baseUrl)} login user password <key>" to ~/.netrc ` +
        `(or use ${FLAGS.mode} offline and sync later with ort-dann wandb-sync)`,
    );
  }
  if (found && mode === 'online') checkApiKey(found.key, found.source);

  const project = nonEmpty(input.project, env.WANDB_PROJECT) ?? DEFAULT_PROJECT;
  checkProject(project, input.project ? FLAGS.project : 'WANDB_PROJECT');
  const runId = nonEmpty(input.runId, env.WANDB_RUN_ID) ?? newRunId();
  checkRunId(runId, input.runId ? FLAGS.runId : 'WANDB_RUN_ID');
  const tags = input.tags ?? (env.WANDB_TAGS ? env.WANDB_TAGS.split(',') : []);
  const timeoutS = Number(env.WANDB_HTTP_TIMEOUT);
  return {
    mode,
    baseUrl,
    appUrl: appUrlFor(baseUrl, env),
    apiKey: mode === 'online' ? found?.key : undefined,
    apiKeySource: mode === 'online' ? found?.source : undefined,
    secret: found?.key,
    project,
    entity: nonEmpty(input.entity, env.WANDB_ENTITY),
    name: nonEmpty(input.name, env.WANDB_NAME),
    tags: tags.map((t) => t.trim()).filter((t) => t !== ''),
    notes: nonEmpty(input.notes, env.WANDB_NOTES),
    group: nonEmpty(input.group, env.WANDB_RUN_GROUP),
    jobType: nonEmpty(input.jobType, env.WANDB_JOB_TYPE),
    runId,
    sweepId: nonEmpty(env.WANDB_SWEEP_ID),
    username: nonEmpty(env.WANDB_USERNAME, env.USER),
    graphqlTimeoutMs: timeoutS > 0 ? timeoutS * 1000 : undefined,
  };
}
