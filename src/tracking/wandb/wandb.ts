/**
 * W&B's HTTP API as wandb-core speaks it: GraphQL (`UpsertBucket`, `CreateRunFiles`) with Basic auth
 * `api:<key>`, the file_stream endpoint, and PUTs of run files to signed storage URLs (without the key).
 * Documents, variables and status rules follow docs/wandb-protocol.md §1–§5.
 */
import { createReadStream } from 'node:fs';
import { UserError } from '../../errors.ts';
import { HttpClient, TransportError, isFinalStatus, retryDelayMs, sleep, type Backoff, type HttpResponse } from './http.ts';
import { FLAGS } from './settings.ts';
import { Reporter, oneLine } from '../reporter.ts';

const UPSERT_BUCKET = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) {
  upsertBucket(input: { id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics }) {
    bucket { id name displayName description config sweepName project { id name entity { id name } } historyLineCount }
    inserted
  }
}`;

const CREATE_RUN_FILES = `mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: { entityName: $entity, projectName: $project, runName: $run, files: $files }) {
    runID uploadHeaders files { name uploadUrl }
  }
}`;

/** UpsertBucket's variables as wandb-core sends them (§2.2): `name` is the run id, null leaves a field unset. */
export interface UpsertVariables {
  name: string;
  project: string;
  entity: string | null;
  displayName: string | null;
  notes: string | null;
  groupName: string | null;
  jobType: string | null;
  tags: string[];
  /** The config in W&B's `{key: {value}}` form, serialised. */
  config: string;
  host: string;
  program: string;
  repo: string | null;
  commit: string | null;
  /** The sweep id when the run belongs to a sweep (the server then names it in `sweepName`). */
  sweep: string | null;
}

export interface UpsertResult {
  storageId: string;
  runId: string;
  displayName: string;
  project: string;
  entity: string;
  historyLineCount: number;
}

export interface ApiTiming {
  graphqlTimeoutMs: number;
  fileStreamTimeoutMs: number;
  uploadTimeoutMs: number;
  backoff: Backoff;
}

/** Retryable failures (network, 429, 5xx) outlasted the attempts allowed; the host may be unreachable. */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreachableError';
  }
}

/** A status that retrying cannot fix, with the server's message. */
export class FinalStatusError extends Error {
  constructor(readonly status: number, message: string, readonly code?: string) {
    super(message);
    this.name = 'FinalStatusError';
  }
}

export interface ApiOptions {
  baseUrl: string;
  appUrl: string;
  apiKey: string;
  apiKeySource: string;
  username?: string;
  timing: ApiTiming;
  reporter: Reporter;
  userAgent: string;
}

export class WandbApi {
  readonly http: HttpClient;
  private readonly auth: string;

  constructor(readonly opts: ApiOptions) {
    this.http = new HttpClient(opts.userAgent);
    this.auth = `Basic ${Buffer.from(`api:${opts.apiKey}`).toString('base64')}`;
  }

  /** Creates or updates the run. Bad key, missing entity or permission problems become UserErrors. */
  async upsertBucket(variables: UpsertVariables, attempts: number, signal?: AbortSignal): Promise<UpsertResult> {
    let data: { upsertBucket?: { bucket?: UpsertBucketReply } };
    try {
      data = (await this.graphql('UpsertBucket', UPSERT_BUCKET, variables, attempts, signal)) as typeof data;
    } catch (e) {
      if (e instanceof FinalStatusError) throw this.upsertUserError(e, variables);
      throw e;
    }
    const bucket = data.upsertBucket?.bucket;
    if (!bucket?.name || !bucket.project?.name || !bucket.project.entity?.name) {
      throw new UnreachableError('W&B answered UpsertBucket without a run');
    }
    return {
      storageId: bucket.id,
      runId: bucket.name,
      displayName: bucket.displayName ?? bucket.name,
      project: bucket.project.name,
      entity: bucket.project.entity.name,
      historyLineCount: bucket.historyLineCount ?? 0,
    };
  }

  /** Signed upload URLs for run files; null URL means the server needs no upload. */
  async createRunFiles(entity: string, project: string, runId: string, names: string[], attempts: number, signal?: AbortSignal) {
    const data = (await this.graphql('CreateRunFiles', CREATE_RUN_FILES, { entity, project, run: runId, files: names }, attempts, signal)) as {
      createRunFiles?: { uploadHeaders?: string[] | null; files?: { name: string; uploadUrl: string | null }[] };
    };
    const headers: Record<string, string> = {};
    for (const h of data.createRunFiles?.uploadHeaders ?? []) {
      const i = h.indexOf(':');
      if (i > 0) headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
    }
    const urls = new Map<string, string | null>();
    for (const f of data.createRunFiles?.files ?? []) {
      // Proxied on-prem storage answers with a path on the API host.
      urls.set(f.name, f.uploadUrl?.startsWith('/') ? `${this.opts.baseUrl}${f.uploadUrl}` : f.uploadUrl);
    }
    return { headers, urls };
  }

  /** One PUT of a local file to a signed URL. No W&B credentials: the URL is the authorisation. */
  putFile(url: string, headers: Record<string, string>, path: string, size: number, signal?: AbortSignal): Promise<HttpResponse> {
    return this.http.request({
      method: 'PUT',
      url,
      headers: { ...headers, 'Content-Length': String(size) },
      body: () => createReadStream(path),
      timeoutMs: this.opts.timing.uploadTimeoutMs,
      signal,
    });
  }

  /** One file_stream POST; the caller owns retries because it rebuilds the body with newer lines. */
  postFileStream(entity: string, project: string, runId: string, body: string, signal?: AbortSignal): Promise<HttpResponse> {
    const path = [entity, project, runId].map(encodeURIComponent).join('/');
    return this.http.request({
      method: 'POST',
      url: `${this.opts.baseUrl}/files/${path}/file_stream`,
      headers: { Authorization: this.auth, 'Content-Type': 'application/json' },
      body,
      timeoutMs: this.opts.timing.fileStreamTimeoutMs,
      signal,
    });
  }

  close(): void {
    this.http.close();
  }

  /** POST /graphql with retries on transport errors, 429 and 5xx; final statuses throw FinalStatusError. */
  private async graphql(operationName: string, query: string, variables: object, attempts: number, signal?: AbortSignal): Promise<unknown> {
    const headers: Record<string, string> = { Authorization: this.auth, 'Content-Type': 'application/json' };
    if (this.opts.username) headers['X-WANDB-USERNAME'] = this.opts.username;
    const body = JSON.stringify({ query, variables, operationName });
    let last = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (signal?.aborted) break;
      let res: HttpResponse | undefined;
      try {
        res = await this.http.request({ method: 'POST', url: `${this.opts.baseUrl}/graphql`, headers, body, timeoutMs: this.opts.timing.graphqlTimeoutMs, signal });
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        last = e.message;
      }
      if (res) {
        const parsed = parseGraphqlBody(res.body);
        if (res.status >= 200 && res.status < 300) {
          if (parsed.errors.length === 0 && parsed.data) return parsed.data;
          // GraphQL errors in a 200 answer do not go away on retry.
          throw new FinalStatusError(res.status, this.describe(res, parsed), parsed.code);
        }
        if (isFinalStatus(res.status)) throw new FinalStatusError(res.status, this.describe(res, parsed), parsed.code);
        last = this.describe(res, parsed);
      }
      if (attempt + 1 < attempts) await sleep(retryDelayMs(attempt, this.opts.timing.backoff, res, Date.now()), signal, false);
    }
    throw new UnreachableError(`${operationName} failed: ${last || 'cancelled'}`);
  }

  private describe(res: HttpResponse, parsed: ParsedGraphql): string {
    const text = parsed.messages.length > 0 ? parsed.messages.join('; ') : res.body;
    return this.opts.reporter.redact(oneLine(`HTTP ${res.status}${text ? `: ${text}` : ''}`, 200));
  }

  private upsertUserError(e: FinalStatusError, input: UpsertVariables): UserError {
    const where = `${input.entity ?? '(your default entity)'}/${input.project}`;
    if (e.status === 401) {
      return new UserError(
        `W&B rejected the API key from ${this.opts.apiKeySource} (${e.message}); copy a valid key from ${this.opts.appUrl}/authorize, ` +
          `or run with ${FLAGS.mode} offline and sync later`,
      );
    }
    if (e.status === 403 || e.code === 'PERMISSION_ERROR' || /permission/i.test(e.message)) {
      return new UserError(`W&B denied creating a run in ${where} (${e.message}); check ${FLAGS.entity} / WANDB_ENTITY: the key's user must belong to that entity`);
    }
    if (e.status === 404 || /not found/i.test(e.message)) {
      return new UserError(
        `W&B has no entity "${input.entity ?? ''}" (${e.message}); fix ${FLAGS.entity} / WANDB_ENTITY, or leave it unset to use your default entity`,
      );
    }
    return new UserError(`W&B refused to create the run in ${where} (${e.message}); check ${FLAGS.project} and ${FLAGS.entity}`);
  }
}

interface UpsertBucketReply {
  id: string;
  name: string;
  displayName: string | null;
  historyLineCount: number | null;
  project?: { name: string; entity?: { name: string } };
}

interface ParsedGraphql {
  data: unknown;
  errors: unknown[];
  messages: string[];
  code?: string;
}

function parseGraphqlBody(body: string): ParsedGraphql {
  try {
    const json = JSON.parse(body) as { data?: unknown; errors?: { message?: string; extensions?: { code?: string } }[] };
    const errors = Array.isArray(json.errors) ? json.errors : [];
    return {
      data: json.data,
      errors,
      messages: errors.map((e) => String(e?.message ?? '')).filter((m) => m !== ''),
      code: errors.find((e) => e?.extensions?.code)?.extensions?.code,
    };
  } catch {
    return { data: undefined, errors: [], messages: [] };
  }
}
