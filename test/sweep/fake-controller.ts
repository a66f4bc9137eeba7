/**
 * A W&B sweep controller for tests, in front of the fake W&B server (test/helpers/fake-wandb.ts): it
 * answers UpsertSweep, the sweep query, CreateAgent and Heartbeat itself, records the `sweep` of each
 * UpsertBucket (answering with `sweepName`), and passes every other request to the fake W&B. Its
 * controller enumerates a grid as wandb/sweeps' grid_search does (itertools.product in parameter order,
 * constants added), hands a run to an agent with no live run, says `exit` when the grid is done, repeats
 * scripted `stop`s on every heartbeat while the run lives, and answers 400 (sweep not running) and 404
 * (sweep deleted) when told to.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeWandb, TEST_KEY, type FakeOptions } from '../helpers/fake-wandb.ts';
import { parseYaml, plainYaml, type YamlValue } from '../../src/sweep/yaml.ts';

export { TEST_KEY };

export interface FakeSweep {
  id: string;
  entity: string;
  project: string;
  /** The YAML text UpsertSweep received. */
  configYaml: string;
  config: Record<string, YamlValue>;
  state: 'RUNNING' | 'FINISHED' | 'PAUSED' | 'CANCELED';
  deleted: boolean;
  /** Parameter sets not handed out yet (grid), in the order the controller hands them out. */
  pending: Record<string, { value: unknown }>[];
  /** Run ids handed out, in order. */
  handedOut: string[];
}

export interface FakeAgent {
  id: string;
  sweepId: string;
  host: string;
  heartbeats: { at: number; runState: Record<string, boolean> }[];
}

export interface Script {
  /** Commands for this heartbeat instead of the grid controller's (undefined: the grid controller decides). */
  heartbeat?(agent: FakeAgent, live: string[], controller: FakeSweepController): object[] | undefined;
}

export class FakeSweepController {
  readonly sweeps = new Map<string, FakeSweep>();
  readonly agents = new Map<string, FakeAgent>();
  /** The `sweep` variable of each run's UpsertBucket calls, by run id. */
  readonly runSweeps = new Map<string, (string | null)[]>();
  /** Heartbeats to answer with this status before answering normally. */
  heartbeatFaults: number[] = [];
  script: Script = {};
  private counter = 0;

  private constructor(private readonly server: http.Server, readonly wandb: FakeWandb) {}

  static async start(opts: FakeOptions = {}): Promise<FakeSweepController> {
    const wandb = await FakeWandb.start(opts);
    let fake!: FakeSweepController;
    const server = http.createServer((req, res) => fake.handle(req, res));
    fake = new FakeSweepController(server, wandb);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  sweep(id: string): FakeSweep {
    const s = this.sweeps.get(id);
    if (!s) throw new Error(`fake controller has no sweep ${id}`);
    return s;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.wandb.close();
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const send = (status: number, body: unknown) => res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
      try {
        this.route(req, res, raw, send);
      } catch (e) {
        send(500, { errors: [{ message: `fake controller: ${String(e)}` }] });
      }
    });
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer, send: (status: number, body: unknown) => void): void {
    if (req.method === 'POST' && req.url === '/graphql') {
      const gql = JSON.parse(raw.toString('utf8')) as { operationName?: string; variables?: Record<string, unknown> };
      const v = gql.variables ?? {};
      const ours = ['UpsertSweep', 'SweepWithRuns', 'CreateAgent', 'Heartbeat'];
      if (ours.includes(gql.operationName ?? '')) {
        if (!this.authorized(req)) return send(401, { errors: [{ message: 'Unauthorized: invalid API key' }] });
        return this.sweepOperation(gql.operationName!, v, send);
      }
      if (gql.operationName === 'UpsertBucket') {
        const list = this.runSweeps.get(v.name as string) ?? [];
        list.push((v.sweep as string | null | undefined) ?? null);
        this.runSweeps.set(v.name as string, list);
        return this.forward(req, raw, res, (body) => {
          const parsed = JSON.parse(body);
          if (parsed?.data?.upsertBucket?.bucket && v.sweep) parsed.data.upsertBucket.bucket.sweepName = v.sweep;
          return JSON.stringify(parsed);
        });
      }
    }
    this.forward(req, raw, res);
  }

  private authorized(req: http.IncomingMessage): boolean {
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    return !!m && Buffer.from(m[1], 'base64').toString('utf8') === `api:${TEST_KEY}`;
  }

  /** Passes the request to the fake W&B, optionally rewriting its answer. */
  private forward(req: http.IncomingMessage, raw: Buffer, res: http.ServerResponse, rewrite?: (body: string) => string): void {
    const target = new URL(req.url ?? '/', this.wandb.url);
    const out = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        let body = Buffer.concat(chunks).toString('utf8');
        if (rewrite && up.statusCode === 200) body = rewrite(body);
        const headers = { ...up.headers };
        delete headers['content-length'];
        res.writeHead(up.statusCode ?? 502, headers).end(body);
      });
    });
    out.on('error', () => req.socket.destroy());
    out.end(raw);
  }

  private sweepOperation(op: string, v: Record<string, unknown>, send: (status: number, body: unknown) => void): void {
    const project = (v.projectName ?? v.project) as string;
    const entity = ((v.entityName ?? v.entity) as string | null) ?? 'alice';
    if (op === 'UpsertSweep') {
      const yaml = v.config as string;
      const config = plainYaml(parseYaml(yaml)) as Record<string, YamlValue>;
      const id = `sw${++this.counter}${Math.random().toString(36).slice(2, 6)}`;
      this.sweeps.set(id, { id, entity, project, configYaml: yaml, config, state: 'RUNNING', deleted: false, pending: grid(config), handedOut: [] });
      return send(200, { data: { upsertSweep: { sweep: { name: id, project: { id: 'p', name: project, entity: { id: 'e', name: entity } } }, configValidationWarnings: [] } } });
    }
    if (op === 'SweepWithRuns') {
      const s = this.sweeps.get(v.sweep as string);
      if (!s || s.deleted || s.project !== project || s.entity !== entity) return send(200, { data: { project: { sweep: null } } });
      return send(200, { data: { project: { sweep: { id: `Sweep:${s.id}`, name: s.id, method: s.config.method, state: s.state, config: s.configYaml } } } });
    }
    if (op === 'CreateAgent') {
      const s = this.sweeps.get(v.sweep as string);
      if (!s || s.deleted) return send(404, { errors: [{ message: `sweep ${v.sweep} not found` }], data: { createAgent: null } });
      if (s.state !== 'RUNNING') return send(400, { errors: [{ message: `Sweep ${entity}/${project}/${s.id} is not running` }], data: { createAgent: null } });
      const id = `agent-${++this.counter}`;
      this.agents.set(id, { id, sweepId: s.id, host: v.host as string, heartbeats: [] });
      return send(200, { data: { createAgent: { agent: { id } } } });
    }
    // Heartbeat
    const agent = this.agents.get(v.id as string);
    const fault = this.heartbeatFaults.shift();
    if (fault !== undefined) return send(fault, { errors: [{ message: `injected ${fault}` }] });
    if (!agent) return send(404, { errors: [{ message: 'agent not found' }] });
    const s = this.sweep(agent.sweepId);
    if (s.deleted) return send(404, { errors: [{ message: `sweep ${s.id} not found` }] });
    const runState = JSON.parse(v.runState as string) as Record<string, boolean>;
    agent.heartbeats.push({ at: Date.now(), runState });
    const live = Object.keys(runState).filter((k) => runState[k]);
    const commands = this.script.heartbeat?.(agent, live, this) ?? this.gridCommands(s, live);
    send(200, { data: { agentHeartbeat: { agent: { id: agent.id }, commands: JSON.stringify(commands) } } });
  }

  /** A run for an idle agent while grid points remain; exit once the grid is done and the agent idle. */
  gridCommands(s: FakeSweep, live: string[]): object[] {
    if (live.length > 0) return [];
    const args = s.pending.shift();
    if (!args) {
      s.state = 'FINISHED';
      return [{ type: 'exit' }];
    }
    return [this.runCommand(s, args)];
  }

  runCommand(s: FakeSweep, args: Record<string, { value: unknown }>): object {
    const runId = `run${++this.counter}${Math.random().toString(36).slice(2, 6)}`;
    s.handedOut.push(runId);
    return { type: 'run', run_id: runId, program: s.config.program ?? null, args };
  }
}

/** grid_search_next_runs' order: itertools.product over the parameters' values, in config order; constants in every run. */
function grid(config: Record<string, YamlValue>): Record<string, { value: unknown }>[] {
  if (config.method !== 'grid') return [];
  const params = Object.entries(config.parameters as Record<string, Record<string, YamlValue>>);
  let points: Record<string, { value: unknown }>[] = [{}];
  for (const [name, p] of params) {
    let values: YamlValue[];
    if (p.values !== undefined) values = p.values as YamlValue[];
    else if (p.distribution === 'int_uniform') values = Array.from({ length: (p.max as number) - (p.min as number) + 1 }, (_, i) => (p.min as number) + i);
    else values = [p.value];
    points = points.flatMap((pt) => values.map((value) => ({ ...pt, [name]: { value } })));
  }
  return points;
}
