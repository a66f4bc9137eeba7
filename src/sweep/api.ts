/**
 * The sweep side of W&B's GraphQL API, with the documents the wandb SDK sends
 * (wandb/sdk/internal/internal_api.py: upsert_sweep, sweep, register_agent, agent_heartbeat) and Basic
 * auth `api:<key>`. The key is only ever held in memory. See docs/wandb-sweeps.md.
 */
import { hostname } from 'node:os';
import { UserError } from '../errors.ts';
import { HttpClient, TransportError, isFinalStatus, retryDelayMs, sleep, type Backoff } from '../tracking/wandb/http.ts';
import { oneLine } from '../tracking/reporter.ts';
import { appUrlFor, checkApiKey, DEFAULT_BASE_URL, findApiKey, netrcMachine, normalizeBaseUrl } from '../tracking/wandb/settings.ts';

const UPSERT_SWEEP = `mutation UpsertSweep($id: ID, $config: String, $description: String, $entityName: String, $projectName: String, $controller: JSONString, $scheduler: JSONString, $state: String, $priorRunsFilters: JSONString, $displayName: String) {
  upsertSweep(input: { id: $id, config: $config, description: $description, entityName: $entityName, projectName: $projectName, controller: $controller, scheduler: $scheduler, state: $state, priorRunsFilters: $priorRunsFilters, displayName: $displayName }) {
    sweep { name project { id name entity { id name } } }
    configValidationWarnings
  }
}`;

const SWEEP = `query SweepWithRuns($entity: String, $project: String, $sweep: String!, $specs: [JSONString!]!) {
  project(name: $project, entityName: $entity) {
    sweep(sweepName: $sweep) { id name method state config }
  }
}`;

const CREATE_AGENT = `mutation CreateAgent($host: String!, $projectName: String, $entityName: String, $sweep: String!) {
  createAgent(input: { host: $host, projectName: $projectName, entityName: $entityName, sweep: $sweep }) { agent { id } }
}`;

const HEARTBEAT = `mutation Heartbeat($id: ID!, $metrics: JSONString, $runState: JSONString) {
  agentHeartbeat(input: { id: $id, metrics: $metrics, runState: $runState }) { agent { id } commands }
}`;

/** A GraphQL call that failed with a status retrying cannot change (or errors in a 200 answer). */
export class GraphqlStatusError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'GraphqlStatusError';
  }
}

/** Network errors, 429 or 5xx outlasted the attempts. */
export class GraphqlUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GraphqlUnreachableError';
  }
}

export interface SweepApiOptions {
  baseUrl: string;
  appUrl: string;
  apiKey: string;
  timeoutMs?: number;
  backoff?: Backoff;
}

/** A command from the controller, as agentHeartbeat returns them. */
export interface AgentCommand {
  type: string;
  run_id?: string;
  program?: string;
  args?: Record<string, { value: unknown }>;
  [key: string]: unknown;
}

export class SweepApi {
  private readonly http = new HttpClient('ort-dann (W&B sweep agent)');
  private readonly auth: string;

  constructor(readonly opts: SweepApiOptions) {
    this.auth = `Basic ${Buffer.from(`api:${opts.apiKey}`).toString('base64')}`;
  }

  /** Creates the sweep; returns its id (the sweep's `name`) and where the server put it. */
  async upsertSweep(configYaml: string, entity: string | null, project: string, description: string | null) {
    const data = (await this.graphql('UpsertSweep', UPSERT_SWEEP, { config: configYaml, entityName: entity, projectName: project, description }, 3)) as {
      upsertSweep?: { sweep?: { name: string; project?: { name: string; entity?: { name: string } } }; configValidationWarnings?: string[] | null };
    };
    const sweep = data.upsertSweep?.sweep;
    if (!sweep?.name) throw new GraphqlUnreachableError('W&B answered UpsertSweep without a sweep');
    return { id: sweep.name, entity: sweep.project?.entity?.name ?? entity, project: sweep.project?.name ?? project, warnings: data.upsertSweep?.configValidationWarnings ?? [] };
  }

  /** The sweep's config (YAML text) and state; null when the project or sweep does not exist. */
  async sweep(entity: string | null, project: string, id: string): Promise<{ config: string; state: string } | null> {
    const data = (await this.graphql('SweepWithRuns', SWEEP, { entity, project, sweep: id, specs: '{}' }, 3)) as {
      project?: { sweep?: { config?: string; state?: string } | null } | null;
    };
    const sweep = data.project?.sweep;
    return sweep ? { config: sweep.config ?? '', state: sweep.state ?? '' } : null;
  }

  async createAgent(entity: string | null, project: string, sweep: string): Promise<string> {
    const data = (await this.graphql('CreateAgent', CREATE_AGENT, { host: hostname(), entityName: entity, projectName: project, sweep }, 3)) as { createAgent?: { agent?: { id?: string } } };
    const id = data.createAgent?.agent?.id;
    if (!id) throw new GraphqlUnreachableError('W&B answered CreateAgent without an agent id');
    return id;
  }

  /** One heartbeat (no retries: the agent loop backs off); `runState` lists the live runs. */
  async heartbeat(agentId: string, runState: Record<string, boolean>): Promise<AgentCommand[]> {
    const data = (await this.graphql('Heartbeat', HEARTBEAT, { id: agentId, metrics: '{}', runState: JSON.stringify(runState) }, 1, 60_000)) as {
      agentHeartbeat?: { commands?: string | null };
    };
    const raw = data.agentHeartbeat?.commands;
    if (!raw) return [];
    const commands = JSON.parse(raw) as unknown;
    return Array.isArray(commands) ? (commands as AgentCommand[]) : [];
  }

  close(): void {
    this.http.close();
  }

  private async graphql(operationName: string, query: string, variables: object, attempts: number, timeoutMs = this.opts.timeoutMs ?? 30_000): Promise<unknown> {
    const body = JSON.stringify({ query, variables, operationName });
    const backoff = this.opts.backoff ?? { baseMs: 2000, maxMs: 60_000 };
    let last = '';
    for (let attempt = 0; attempt < attempts; attempt++) {
      let res;
      try {
        res = await this.http.request({ method: 'POST', url: `${this.opts.baseUrl}/graphql`, headers: { Authorization: this.auth, 'Content-Type': 'application/json' }, body, timeoutMs });
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        last = e.message;
      }
      if (res) {
        let parsed: { data?: unknown; errors?: { message?: string }[] } = {};
        try {
          parsed = JSON.parse(res.body);
        } catch {
          // A proxy's HTML error page: described by its status.
        }
        const messages = (Array.isArray(parsed.errors) ? parsed.errors : []).map((e) => String(e?.message ?? '')).filter((m) => m !== '');
        const describe = `HTTP ${res.status}${messages.length ? `: ${messages.join('; ')}` : res.body && !parsed.data ? `: ${res.body}` : ''}`;
        const text = oneLine(describe.replaceAll(this.opts.apiKey, '<api key>'), 200);
        if (res.status >= 200 && res.status < 300) {
          if (messages.length === 0 && parsed.data) return parsed.data;
          throw new GraphqlStatusError(res.status, `${operationName}: ${text}`);
        }
        if (isFinalStatus(res.status)) throw new GraphqlStatusError(res.status, `${operationName}: ${text}`);
        last = text;
      }
      if (attempt + 1 < attempts) await sleep(retryDelayMs(attempt, backoff, res, Date.now()));
    }
    throw new GraphqlUnreachableError(`${operationName} failed: ${last}`);
  }
}

/** The API for the sweep and agent commands: W&B's base URL and key as the train command finds them; online only. */
export async function sweepApiFromEnvironment(command: string, env: NodeJS.ProcessEnv = process.env): Promise<SweepApi> {
  const baseUrl = normalizeBaseUrl(env.WANDB_BASE_URL?.trim() || DEFAULT_BASE_URL, 'WANDB_BASE_URL');
  const found = await findApiKey(baseUrl, { env });
  if (!found) {
    throw new UserError(`ort-dann ${command} needs a W&B API key: set WANDB_API_KEY, or add "machine ${netrcMachine(baseUrl)} login user password <key>" to ~/.netrc`);
  }
  checkApiKey(found.key, found.source);
  return new SweepApi({ baseUrl, appUrl: appUrlFor(baseUrl, env), apiKey: found.key });
}

/** `sweep`, `project/sweep` or `entity/project/sweep`, as the wandb agent splits it. */
export function parseSweepPath(path: string, env: NodeJS.ProcessEnv = process.env): { entity: string | null; project: string; id: string } {
  const parts = path.split('/');
  if (parts.length > 3 || parts.some((p) => p === '')) throw new UserError(`${path}: give the sweep as SWEEP_ID, PROJECT/SWEEP_ID or ENTITY/PROJECT/SWEEP_ID (as ort-dann sweep prints it)`);
  const id = parts.at(-1)!;
  const project = parts.length >= 2 ? parts.at(-2)! : env.WANDB_PROJECT?.trim() || 'uncategorized';
  const entity = parts.length === 3 ? parts[0] : env.WANDB_ENTITY?.trim() || null;
  return { entity, project, id };
}
