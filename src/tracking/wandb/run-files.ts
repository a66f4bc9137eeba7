/**
 * The run files W&B shows on a run's Overview and Files tabs: the config in its `{key: {value}}` form
 * (as the UpsertBucket JSON string and as config.yaml) and wandb-metadata.json (host, command, hardware).
 */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { toWandbJson } from '../extended-json.ts';

/** W&B wants every top-level key wrapped as `{value: v}`; `_wandb.t` marks the run as started (§2.3). */
export function wrapConfig(config: Record<string, unknown>): Record<string, { value: unknown }> {
  const wrapped: Record<string, { value: unknown }> = {};
  for (const [k, v] of Object.entries(config)) if (v !== undefined) wrapped[k] = { value: v };
  wrapped._wandb = { value: { t: { '13': process.platform }, m: [] } };
  return wrapped;
}

export function configJson(config: Record<string, unknown>): string {
  return toWandbJson(wrapConfig(config));
}

/** config.yaml as the Python SDK writes it: `wandb_version: 1`, then each key with `desc` and `value`. */
export function configYaml(config: Record<string, unknown>): string {
  const lines = ['wandb_version: 1', ''];
  for (const [k, v] of Object.entries(wrapConfig(config))) {
    lines.push(`${yamlKey(k)}:`, '  desc: null', `  value:${yamlValue(v.value, 4)}`);
  }
  return `${lines.join('\n')}\n`;
}

const YAML_WORDS = /^(?:true|false|yes|no|on|off|y|n|null|~)$/i;

function yamlKey(k: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) && !YAML_WORDS.test(k) ? k : JSON.stringify(k);
}

/** The text after `key:`: ` scalar`, or a newline and an indented block. */
function yamlValue(v: unknown, indent: number): string {
  const pad = ' '.repeat(indent);
  if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
    return yamlValue((v as { toJSON(): unknown }).toJSON(), indent);
  }
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const items = Array.from(v as ArrayLike<unknown>);
    if (items.length === 0) return ' []';
    return items.map((item) => `\n${pad}-${yamlValue(item, indent + 2)}`).join('');
  }
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return ' {}';
    return entries.map(([k, x]) => `\n${pad}${yamlKey(k)}:${yamlValue(x, indent + 2)}`).join('');
  }
  return ` ${yamlScalar(v)}`;
}

function yamlScalar(v: unknown): string {
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return '.nan';
    if (!Number.isFinite(v)) return v > 0 ? '.inf' : '-.inf';
    const s = String(v);
    // YAML 1.1 readers (PyYAML) take `1e-05` for a string: a float needs its dot.
    return /e/.test(s) && !s.includes('.') ? s.replace('e', '.0e') : s;
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return JSON.stringify(v);
  return 'null';
}

export interface GpuInfo {
  name: string;
  memoryTotal: number;
}

export interface GitInfo {
  remote?: string;
  commit?: string;
}

/** The Overview tab's facts, in wandb-metadata.json's field names. */
export function environmentMetadata(opts: { startedAt: Date; args: string[]; gpus: GpuInfo[]; git: GitInfo }): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    os: `${os.type()}-${os.release()}-${os.arch()}`,
    nodejs: process.version,
    startedAt: opts.startedAt.toISOString(),
    args: opts.args,
    program: 'ort-dann',
    root: process.cwd(),
    host: os.hostname(),
    username: userName(),
    executable: process.execPath,
    cpu_count: os.cpus().length,
    cpu_count_logical: os.cpus().length,
    memory: { total: os.totalmem() },
  };
  if (opts.git.commit) meta.git = { remote: opts.git.remote, commit: opts.git.commit };
  if (opts.gpus.length > 0) {
    meta.gpu = opts.gpus[0].name;
    meta.gpu_count = opts.gpus.length;
    meta.gpu_nvidia = opts.gpus.map((g) => ({ name: g.name, memoryTotal: g.memoryTotal }));
  }
  return meta;
}

/** os.userInfo() throws where the uid has no passwd entry (common in containers). */
function userName(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER;
  }
}

/** The working directory's commit and origin, if it is a git checkout; credentials in the remote URL are cut. */
export async function gitInfo(cwd = process.cwd()): Promise<GitInfo> {
  const git = (args: string[]) =>
    new Promise<string | undefined>((resolve) => {
      execFile('git', args, { cwd, timeout: 2000 }, (err, stdout) => resolve(err ? undefined : stdout.trim() || undefined));
    });
  const [commit, remote] = await Promise.all([git(['rev-parse', 'HEAD']), git(['remote', 'get-url', 'origin'])]);
  return { commit, remote: remote?.replace(/\/\/[^/@]*@/, '//') };
}
