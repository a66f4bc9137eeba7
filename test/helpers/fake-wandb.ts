/**
 * A W&B server for tests, on 127.0.0.1 only, modelled on W&B's own mock_server.py and the protocol notes
 * (docs/wandb-protocol.md §10): Basic auth `api:<key>`, GraphQL UpsertBucket/CreateRunFiles,
 * file_stream with offset semantics (content[i] lands on line offset+i, so a resent request overwrites
 * instead of duplicating), signed-URL uploads that must carry no credentials, real error bodies, and
 * injectable faults: statuses (with Retry-After), hangs, dropped connections, and drops after the
 * request was applied (the answer lost on the way back).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseWandbJson } from '../../src/tracking/extended-json.ts';

export type Route = 'UpsertBucket' | 'CreateRunFiles' | 'file_stream' | 'upload';

export type Fault =
  | { kind: 'status'; status: number; body?: string; headers?: Record<string, string> }
  /** Never answers; the client must time out. */
  | { kind: 'hang' }
  /** Closes the connection without an answer, before applying the request. */
  | { kind: 'drop' }
  /** Applies the request, then closes the connection: the client cannot know it succeeded. */
  | { kind: 'apply-then-drop' };

export interface FakeRun {
  entity: string;
  project: string;
  name: string;
  storageId: string;
  displayName: string;
  /** Merged `{key: {value}}` config as received. */
  config: Record<string, { value: unknown }>;
  tags: string[] | null;
  notes: string | null;
  group: string | null;
  jobType: string | null;
  upserts: number;
  /** file_stream files by name: line number → line. */
  files: Map<string, string[]>;
  /** Lines written past the end of a file (a hole in it): must stay 0. */
  gaps: number;
  uploads: Map<string, Buffer>;
  uploaded: string[];
  complete: boolean;
  exitcode: number | null;
  state: 'running' | 'finished' | 'failed';
  stopped: boolean;
  heartbeats: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  route: Route | 'other';
  status: number | 'hang' | 'drop';
  body: string;
  headers: http.IncomingHttpHeaders;
  at: number;
}

export interface FakeOptions {
  apiKeys?: string[];
  entities?: string[];
  /** Entities that exist but the key may not write to (403 PERMISSION_ERROR). */
  forbiddenEntities?: string[];
  defaultEntity?: string;
}

export const TEST_KEY = 'test0123456789abcdefghijklmnopqrstuvwxyz0A';

export class FakeWandb {
  readonly runs = new Map<string, FakeRun>();
  readonly requests: RequestRecord[] = [];
  /** Uploads that carried an Authorization header (a leaked key): must stay 0. */
  authLeaks = 0;
  private readonly faults: { route: Route; fault: Fault; skip: number; times: number }[] = [];
  private readonly opts: Required<FakeOptions>;
  private nameCounter = 0;

  private constructor(private readonly server: http.Server, opts: FakeOptions) {
    this.opts = {
      apiKeys: opts.apiKeys ?? [TEST_KEY],
      entities: opts.entities ?? ['alice', 'team-x'],
      forbiddenEntities: opts.forbiddenEntities ?? ['closed-team'],
      defaultEntity: opts.defaultEntity ?? 'alice',
    };
  }

  static async start(opts: FakeOptions = {}): Promise<FakeWandb> {
    let fake!: FakeWandb;
    const server = http.createServer((req, res) => fake.handle(req, res));
    fake = new FakeWandb(server, opts);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return fake;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Queues a fault: once earlier faults for `route` are used up and `skip` more requests have passed, the next `times` get it. */
  inject(route: Route, fault: Fault, times = 1, skip = 0): void {
    this.faults.push({ route, fault, skip, times });
  }

  /** Ends every queued fault: the server is healthy again. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** The run with this id (the GraphQL `name`), in any entity/project. */
  run(runId: string): FakeRun {
    const run = [...this.runs.values()].find((r) => r.name === runId);
    if (!run) throw new Error(`fake W&B has no run ${runId}`);
    return run;
  }

  lines(runId: string, file: string): string[] {
    return this.run(runId).files.get(file) ?? [];
  }

  history(runId: string): Record<string, unknown>[] {
    return this.lines(runId, 'wandb-history.jsonl').map((l) => parseWandbJson(l) as Record<string, unknown>);
  }

  summary(runId: string): Record<string, unknown> | undefined {
    const lines = this.lines(runId, 'wandb-summary.json');
    return lines.length > 0 ? (parseWandbJson(lines[lines.length - 1]) as Record<string, unknown>) : undefined;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private takeFault(route: Route): Fault | undefined {
    const f = this.faults.find((x) => x.route === route);
    if (!f) return undefined;
    if (f.skip > 0) {
      f.skip--;
      return undefined;
    }
    if (--f.times <= 0) this.faults.splice(this.faults.indexOf(f), 1);
    return f.fault;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const record: RequestRecord = { method: req.method ?? '', path: req.url ?? '', route: 'other', status: 0, body: raw.toString('utf8'), headers: req.headers, at: Date.now() };
      this.requests.push(record);
      try {
        this.dispatch(req, res, raw, record);
      } catch (e) {
        record.status = 500;
        res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: String(e) }));
      }
    });
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse, raw: Buffer, record: RequestRecord): void {
    const url = new URL(req.url ?? '/', this.url);
    const send: Send = (status, body, headers = {}) => {
      record.status = status;
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers }).end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    const upload = /^\/storage\/([^/]+)\/(.+)$/.exec(url.pathname);
    const stream = /^\/files\/([^/]+)\/([^/]+)\/([^/]+)\/file_stream$/.exec(url.pathname);
    let route: Route | undefined;
    let op: ((reply: Send) => void) | undefined;
    if (req.method === 'PUT' && upload) {
      route = 'upload';
      op = (reply) => this.upload(req, raw, decodeURIComponent(upload[1]), decodeURIComponent(upload[2]), reply);
    } else if (req.method === 'POST' && url.pathname === '/graphql') {
      const gql = JSON.parse(raw.toString('utf8')) as { operationName?: string; variables?: Record<string, unknown> };
      const v = gql.variables ?? {};
      if (gql.operationName === 'UpsertBucket') op = (reply) => this.upsert(v, reply);
      if (gql.operationName === 'CreateRunFiles') op = (reply) => this.createRunFiles(v, reply);
      if (op) route = gql.operationName as Route;
    } else if (req.method === 'POST' && stream) {
      route = 'file_stream';
      const [, e, p, r] = stream.map(decodeURIComponent);
      op = (reply) => this.fileStream(e, p, r, raw.toString('utf8'), reply);
    }
    record.route = route ?? 'other';
    if (!route || !op) return send(404, { errors: [{ message: `no route ${req.method} ${url.pathname}` }] });
    if (route !== 'upload' && !this.authorized(req)) return send(401, { errors: [{ message: 'Unauthorized: invalid API key' }] });

    const fault = this.takeFault(route);
    if (!fault) return op(send);
    switch (fault.kind) {
      case 'status':
        return send(fault.status, fault.body ?? { errors: [{ message: `injected ${fault.status}` }] }, fault.headers);
      case 'hang':
        record.status = 'hang';
        return;
      case 'drop':
        record.status = 'drop';
        req.socket.destroy();
        return;
      case 'apply-then-drop':
        op(() => {});
        record.status = 'drop';
        req.socket.destroy();
        return;
    }
  }

  private authorized(req: http.IncomingMessage): boolean {
    const m = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    return decoded.startsWith('api:') && this.opts.apiKeys.includes(decoded.slice(4));
  }

  private upsert(v: Record<string, unknown>, send: Send): void {
    const entity = (v.entity as string | null) ?? this.opts.defaultEntity;
    const project = (v.project as string | null) ?? 'uncategorized';
    const name = v.name as string;
    if (this.opts.forbiddenEntities.includes(entity)) {
      return send(403, { errors: [{ message: 'permission denied', path: ['upsertBucket'], extensions: { code: 'PERMISSION_ERROR' } }], data: { upsertBucket: null } });
    }
    if (!this.opts.entities.includes(entity)) {
      return send(404, { errors: [{ message: `entity ${entity} not found during upsertBucket`, path: ['upsertBucket'] }], data: { upsertBucket: null } });
    }
    const key = `${entity}/${project}/${name}`;
    let run = this.runs.get(key);
    const inserted = !run;
    if (!run) {
      run = {
        entity, project, name, storageId: `store-${this.runs.size + 1}`, displayName: (v.displayName as string) ?? `fake-run-${++this.nameCounter}`,
        config: {}, tags: null, notes: null, group: null, jobType: null, upserts: 0, files: new Map(), gaps: 0, uploads: new Map(), uploaded: [],
        complete: false, exitcode: null, state: 'running', stopped: false, heartbeats: 0,
      };
      this.runs.set(key, run);
    }
    run.upserts++;
    if (v.displayName) run.displayName = v.displayName as string;
    if (v.config) Object.assign(run.config, parseWandbJson(v.config as string));
    if (v.tags) run.tags = v.tags as string[];
    if (v.notes) run.notes = v.notes as string;
    if (v.groupName) run.group = v.groupName as string;
    if (v.jobType) run.jobType = v.jobType as string;
    send(200, {
      data: {
        upsertBucket: {
          bucket: {
            id: run.storageId, name: run.name, displayName: run.displayName, description: null, config: JSON.stringify(run.config), sweepName: null,
            historyLineCount: run.files.get('wandb-history.jsonl')?.length ?? 0,
            project: { id: `proj-${project}`, name: project, entity: { id: `ent-${entity}`, name: entity } },
          },
          inserted,
        },
      },
    });
  }

  private findRun(entity: string, project: string, name: string): FakeRun | undefined {
    return this.runs.get(`${entity}/${project}/${name}`);
  }

  private createRunFiles(v: Record<string, unknown>, send: Send): void {
    const run = this.findRun(v.entity as string, v.project as string, v.run as string);
    if (!run) return send(404, { errors: [{ message: `run ${v.run} not found` }], data: { createRunFiles: null } });
    const files = (v.files as string[]).map((name) => ({ name, uploadUrl: `${this.url}/storage/${run.storageId}/${encodeURIComponent(name)}` }));
    send(200, { data: { createRunFiles: { runID: run.storageId, uploadHeaders: ['X-Fake-Signed:yes'], files } } });
  }

  private upload(req: http.IncomingMessage, raw: Buffer, storageId: string, name: string, send: Send): void {
    if (req.headers.authorization) {
      this.authLeaks++;
      return send(400, { error: 'signed uploads must not carry Authorization' });
    }
    if (req.headers['x-fake-signed'] !== 'yes') return send(403, { error: 'missing the upload headers from CreateRunFiles' });
    const run = [...this.runs.values()].find((r) => r.storageId === storageId);
    if (!run) return send(404, { error: 'no such upload target' });
    run.uploads.set(name, raw);
    send(200, '');
  }

  private fileStream(entity: string, project: string, runId: string, body: string, send: Send): void {
    const run = this.findRun(entity, project, runId);
    if (!run) return send(404, { error: `run ${entity}/${project}/${runId} not found` });
    const req = JSON.parse(body) as {
      files?: Record<string, { offset: number; content: string[] }>;
      uploaded?: string[];
      complete?: boolean;
      exitcode?: number;
    };
    if (!req.files && !req.uploaded && !req.complete) run.heartbeats++;
    for (const [name, chunk] of Object.entries(req.files ?? {})) {
      if (!isWellFormed(name, chunk.content)) return send(400, { error: `${name}: a line is not JSON` });
    }
    for (const [name, chunk] of Object.entries(req.files ?? {})) {
      const lines = run.files.get(name) ?? [];
      if (chunk.offset > lines.length) run.gaps++;
      chunk.content.forEach((line, i) => (lines[chunk.offset + i] = line));
      run.files.set(name, lines);
    }
    run.uploaded.push(...(req.uploaded ?? []));
    if (req.complete) {
      run.complete = true;
      run.exitcode = req.exitcode ?? null;
      run.state = req.exitcode === 0 ? 'finished' : 'failed';
    }
    send(200, { exitcode: null, limits: {}, stopped: run.stopped });
  }
}

type Send = (status: number, body: unknown, headers?: Record<string, string>) => void;

/** The backend needs each .json/.jsonl line to be one (extended) JSON document; the fake refuses others. */
function isWellFormed(name: string, lines: string[]): boolean {
  if (!name.endsWith('.jsonl') && !name.endsWith('.json')) return true;
  try {
    lines.forEach((l) => parseWandbJson(l));
    return true;
  } catch {
    return false;
  }
}
